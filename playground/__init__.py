"""Reflection Playground: the Django project and its one app."""

from playground.celery import app as celery_app

__all__ = ["celery_app"]
