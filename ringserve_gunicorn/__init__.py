"""The gunicorn worker class (`gunicorn -k ringserve.Worker`): the only place gunicorn is imported.

Not built yet (issue 6): importing this package works, `ringserve.Worker` does not exist yet.
"""
