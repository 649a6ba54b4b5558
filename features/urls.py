"""Tracking endpoints (click, open); they need no sign-in."""
urlpatterns: list = []
