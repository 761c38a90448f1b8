"""What the image runs besides the Django project: the web process's launcher (asgi_server) and
its container health check. Standard library only, apart from the ASGI server it starts."""
