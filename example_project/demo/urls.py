"""The demo pages; their view names (`demo:user`...) show up on the stats page."""

from __future__ import annotations

from django.urls import path

from example_project.demo import views

app_name = "demo"

urlpatterns = [
    path("", views.index, name="index"),
    path("users/<int:user_id>/", views.user_detail, name="user"),
    path("providers/<int:provider_id>/", views.provider_detail, name="provider"),
    path("accounts/<int:user_id>/", views.accounts, name="accounts"),
    path("simulate/", views.simulate, name="simulate"),
]
