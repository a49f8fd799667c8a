from django.contrib import admin

from notes.forms import describe_upload
from notes.models import Attachment, Note


@admin.register(Note)
class NoteAdmin(admin.ModelAdmin):
    list_display = ["title", "created_at"]
    search_fields = ["title", "body"]


@admin.register(Attachment)
class AttachmentAdmin(admin.ModelAdmin):
    list_display = ["name", "size", "content_type", "uploaded_at"]
    fields = ["file", "name", "content_type", "size", "sha256", "uploaded_at"]
    readonly_fields = ["size", "sha256", "uploaded_at"]

    def save_model(self, request, obj, form, change):
        if "file" in form.changed_data:
            describe_upload(obj, form.cleaned_data["file"])
        super().save_model(request, obj, form, change)
