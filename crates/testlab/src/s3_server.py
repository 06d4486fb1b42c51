# moto's S3 server (moto.server.main, werkzeug underneath) with one change: every TLS
# connection is closed with a TLS close_notify before the socket is shut.
#
# Why: werkzeug answers every request with `Connection: close` and closes the socket without
# a TLS shutdown. pgBackRest (2.45) reads a `Connection: close` response whose
# `Content-Length` is 0 (a PUT's) up to the end of the stream and accepts a missing
# close_notify there only for XML/JSON bodies, so every PUT failed with
# "TLS error [1:167772454] unexpected eof while reading" and was retried for a minute.
# pgBackRest cannot talk plain HTTP to S3 at all, so the server must serve TLS.
#
# Run as: python -c "$(this file)" -H HOST -p PORT -c CERT -k KEY

import ssl
import sys

import werkzeug.serving as serving

_shutdown_request = serving.BaseWSGIServer.shutdown_request


def shutdown_request(self, request):
    if isinstance(request, ssl.SSLSocket):
        try:
            # Bounded: a client that never answers the close_notify costs one thread 5 s.
            request.settimeout(5)
            request.unwrap()
        except (OSError, ValueError):
            pass
    _shutdown_request(self, request)


serving.BaseWSGIServer.shutdown_request = shutdown_request

from moto.server import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
