"""A minimal Django project for the WSGI tests: no database, no middleware beyond CommonMiddleware."""
