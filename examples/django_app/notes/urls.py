from django.urls import path

from notes import api, views

app_name = "notes"

urlpatterns = [
    # Server-rendered pages (CSRF-protected forms, messages, redirect after POST)
    path("", views.index, name="index"),
    path("upload/", views.upload, name="upload"),
    path("attachments/<int:pk>/", views.download, name="download"),
    path("stream/", views.stream, name="stream"),
    # JSON API
    path("api/notes/", api.note_list, name="api-notes"),
    path("api/notes/<int:pk>/", api.note_detail, name="api-note"),
    path("api/attachments/", api.attachment_list, name="api-attachments"),
    path("api/stats/", api.stats, name="api-stats"),
]
