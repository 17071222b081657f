"""The API's routes, one router per area: search, items (metadata, thumbnails, the files), memories (an agent's
notes), collection (stats, relevance, audit, indexing). Each route is thin: it reads the request, calls the
engine, and declares every status and media type it can answer with."""
