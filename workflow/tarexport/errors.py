"""The project's single error type: every user-facing failure is one line.

Re-raising: `from exc` where the cause is a system or decoder error worth a developer's
look (it is never printed to users: they get str(error) alone); `from None` where the
cause says nothing more (an error re-located with image, source and member) or could
carry a secret (HTTP errors, a credential helper's output: never chained)."""


class TarexportError(Exception):
    """A failure the user can act on; str() is the whole one-line message."""

    def __init__(self, message: str, *, image: str = "", source: str = "", member: str = ""):
        self.message, self.image, self.source, self.member = message, image, source, member
        parts = []
        if image:
            parts.append(f"image {image}")
        if source:
            parts.append(f"source {source}")
        if member:
            parts.append(f"member {member}")
        where = ", ".join(parts)
        text = f"{where}: {message}" if where else message
        # One line, always: newlines from nested messages would split the report.
        super().__init__(" ".join(text.split("\n")))


def error_line(error: TarexportError | OSError) -> str:
    """The one line a user sees for an error: ours as it is, a system error (disk full, an
    unreadable file) by its file and reason, never a traceback."""
    if isinstance(error, OSError):
        return f"tarexport: error: {error.filename or ''}: {error.strerror or error}"
    return f"tarexport: error: {error}"


def located(error: TarexportError, *, image: str = "", source: str = "", member: str = "") -> TarexportError:
    """The same error with what it lacks of image, source and member filled in."""
    return TarexportError(
        error.message,
        image=error.image or image,
        source=error.source or source,
        member=error.member or member,
    )
