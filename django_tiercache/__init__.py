"""django_tiercache: tiercache as a Django cache backend, with metrics and an admin page."""
