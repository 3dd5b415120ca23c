"""The file-processing pipeline: pure stages (extract, chunk, embed) with no web or queue code."""
