"""What the runs service refuses with: each maps to one HTTP status (bnscope.api.errors)."""


class NotFound(LookupError):
    pass


class Conflict(RuntimeError):
    """The action does not fit the run's state (e.g. resuming a finished run)."""


class Invalid(ValueError):
    """A request that cannot be carried out as asked, naming the field."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


class QueueFull(RuntimeError):
    """More runs are waiting than the queue holds; try again once some have started."""

    retry_after_s = 30


class StorageFull(RuntimeError):
    """The change could not be saved: the disk (or the database's size cap) is full."""
