"""The `/ui` dashboard: static HTML/CSS/JS over the same JSON API (no build step)."""
