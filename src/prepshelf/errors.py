"""prepshelf's exceptions, each knowing how it looks to an HTTP client.

    PrepshelfError                      500 server_error
    ├── InvalidRequestError             400 invalid_request_error (names its `param`)
    │   ├── NotFoundError               404
    │   ├── ConflictError               409
    │   ├── RequestTimeoutError         408 (a request body that stalls or takes too long)
    │   ├── PayloadTooLargeError        413
    │   └── UnsupportedMediaTypeError   415 (e.g. a multipart body sent to a JSON route)
    ├── AuthenticationError             401
    ├── PermissionDeniedError           403 (a valid key without the right, e.g. not admin)
    ├── RateLimitError                  429 (a key over its request rate or concurrency)
    ├── ServiceUnavailableError         503 (the database cannot answer a key lookup)
    └── FileProcessingError             a file that cannot be ingested; `code` goes to last_error
        ├── UnsupportedFileError        code unsupported_file (a type we do not read)
        ├── InvalidFileError            code invalid_file (broken, empty, encrypted, no text)
        └── TransientError              worth retrying (vendor timeout, 429, 5xx, lost DB)

The pipeline raises FileProcessingError subclasses; the API maps every PrepshelfError to an
OpenAI-style error body in one place (`api/errors.py`).
"""

from __future__ import annotations


class PrepshelfError(Exception):
    """An internal error occurred in prepshelf."""

    status_code = 500
    error_type = "server_error"
    code: str | None = None

    def __init__(self, message: str | None = None, *, param: str | None = None) -> None:
        self.message = message or (self.__doc__ or "error").strip()
        self.param = param
        super().__init__(self.message)


class InvalidRequestError(PrepshelfError):
    """The request is not valid."""

    status_code = 400
    error_type = "invalid_request_error"


class NotFoundError(InvalidRequestError):
    """No such object."""

    status_code = 404


class ConflictError(InvalidRequestError):
    """The request conflicts with the current state of the object."""

    status_code = 409


class PayloadTooLargeError(InvalidRequestError):
    """The request body is too large."""

    status_code = 413
    code = "request_too_large"


class RequestTimeoutError(InvalidRequestError):
    """The request body did not arrive in time."""

    status_code = 408
    code = "request_timeout"


class UnsupportedMediaTypeError(InvalidRequestError):
    """This route does not accept a body of that content type."""

    status_code = 415
    code = "unsupported_media_type"


class AuthenticationError(PrepshelfError):
    """Incorrect or missing API key."""

    status_code = 401
    error_type = "authentication_error"
    code = "invalid_api_key"


class PermissionDeniedError(PrepshelfError):
    """This API key is not allowed to do that."""

    status_code = 403
    error_type = "permission_error"
    code = "insufficient_permissions"


class RateLimitError(PrepshelfError):
    """Too many requests for this API key; retry after `retry_after_s` seconds."""

    status_code = 429
    error_type = "rate_limit_error"  # OpenAI's type: its SDK retries these, honouring Retry-After
    code = "rate_limit_exceeded"

    def __init__(self, message: str | None = None, *, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ServiceUnavailableError(PrepshelfError):
    """The service cannot answer right now; retry shortly."""

    status_code = 503
    code = "service_unavailable"
    retry_after_s = 1.0


class FileProcessingError(PrepshelfError):
    """The file could not be processed."""

    code = "server_error"
    retryable = False


class UnsupportedFileError(FileProcessingError):
    """The file type is not supported."""

    code = "unsupported_file"


class InvalidFileError(FileProcessingError):
    """The file is broken, empty or unreadable."""

    code = "invalid_file"


class TransientError(FileProcessingError):
    """A temporary fault; the work is retried with backoff."""

    retryable = True
