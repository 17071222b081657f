"""Shipped data: the small space trained here (models/) and the demo folder (demo/)."""
