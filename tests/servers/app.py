"""The WSGI application gunicorn.sh and uwsgi.sh serve: one line naming the
server (SERVER_SOFTWARE is "gunicorn/..." or "uWSGI ...")."""


def application(environ, start_response):
    software = environ.get("SERVER_SOFTWARE", "uWSGI" if "uwsgi.version" in environ else "unknown")
    body = f"hello from {software.split('/')[0].split(' ')[0]} (WSGI)\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
