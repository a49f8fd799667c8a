from django.db import models
from django.urls import reverse


class Note(models.Model):
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.title

    def as_dict(self) -> dict:
        return {
            "id": self.pk,
            "title": self.title,
            "body": self.body,
            "created_at": self.created_at.isoformat(),
            "url": reverse("notes:api-note", args=[self.pk]),
        }


class Attachment(models.Model):
    """An uploaded file, saved under MEDIA_ROOT/uploads/ by Django's FileSystemStorage."""

    file = models.FileField(upload_to="uploads/%Y/%m/")
    name = models.CharField(max_length=255, blank=True, help_text="Default: the name the file was uploaded with.")
    content_type = models.CharField(max_length=100, blank=True)
    size = models.PositiveBigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True)
    uploaded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-uploaded_at", "-id"]

    def __str__(self) -> str:
        return self.name

    def as_dict(self) -> dict:
        return {
            "id": self.pk,
            "name": self.name,
            "content_type": self.content_type,
            "size": self.size,
            "sha256": self.sha256,
            "uploaded_at": self.uploaded_at.isoformat(),
            "download_url": reverse("notes:download", args=[self.pk]),
        }
