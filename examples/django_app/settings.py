"""A minimal Django project around `views.predict` (run: DEEPCAT_MODEL=model.onnx
django-admin runserver --settings examples.django_app.settings --pythonpath .)."""

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "only-for-the-example")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
ROOT_URLCONF = "examples.django_app.urls"
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []
DATABASES: dict = {}
DEEPCAT_MODEL = os.environ.get("DEEPCAT_MODEL", "model.onnx")
DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000_000
