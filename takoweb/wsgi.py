"""WSGI entry point (management tools only; the service itself runs under daphne)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "takoweb.settings")
application = get_wsgi_application()
