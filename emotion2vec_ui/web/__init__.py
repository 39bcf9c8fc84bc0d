"""The web page and its REST API: request checks, handlers, views, tabs."""
