"""A receiver that verifies signatures: the README's example, run by the tests."""

import os
from http.server import BaseHTTPRequestHandler, HTTPServer

from webhooks import WebhookVerificationFailed, verify

SECRET = os.environ.get("WEBHOOK_SECRET", "")  # the whsec_... printed by `webhooks endpoints add`
seen_ids: set[str] = set()  # use your database: retries and replays repeat a webhook-id


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        try:
            event = verify(body, dict(self.headers), SECRET)  # the exact bytes, unparsed
        except WebhookVerificationFailed:
            self.send_response(401)
            self.end_headers()
            return
        if self.headers["webhook-id"] not in seen_ids:
            seen_ids.add(self.headers["webhook-id"])
            for shot in event["data"]["screenshot_set"]["screenshots"]:
                if shot["status"] == "uploaded":
                    print("ready:", shot["download_url"])
        self.send_response(204)  # any 2XX: delivered; answer fast, work later
        self.end_headers()


if __name__ == "__main__":
    HTTPServer(("", 8000), Receiver).serve_forever()
