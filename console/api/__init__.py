"""The console's web API, split as full-stack-fastapi-template does: `deps` (what a route needs: the
console context and the caller's role), `http` (the JSON routes), `live` (the WebSockets). console/app.py
assembles them."""
