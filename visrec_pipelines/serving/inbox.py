"""Where POST /events puts feedback: the dataset's landing area (``data.landing``), opened on first
use and kept for the life of the app, and the dataset's users table (events of users it does not
list would be quarantined by the pipeline), read again whenever the file changes."""
from ..data.contract import Dataset
from ..data.landing import EventLanding


class EventInbox:
    def __init__(self):
        self._landing: EventLanding | None = None
        self._users: tuple[int, frozenset] | None = None     # (users.csv mtime, its ids)

    def landing(self, dataset: Dataset) -> EventLanding:
        if self._landing is None:
            self._landing = EventLanding.for_dataset(dataset)
        return self._landing

    def known_users(self, dataset: Dataset) -> frozenset | None:
        """users.csv ids when the dataset has one, else None (any well-formed user id)."""
        path = dataset.users_path
        if not path.is_file():
            return None
        stamp = path.stat().st_mtime_ns
        if self._users is None or self._users[0] != stamp:
            self._users = (stamp, frozenset(dataset.read_users()["user_id"].dropna()))
        return self._users[1]
