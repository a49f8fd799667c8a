import hashlib

from django import forms

from notes.models import Attachment, Note


class NoteForm(forms.ModelForm):
    class Meta:
        model = Note
        fields = ["title", "body"]
        widgets = {"body": forms.Textarea(attrs={"rows": 3})}


class UploadForm(forms.Form):
    file = forms.FileField()


def describe_upload(attachment: Attachment, uploaded) -> None:
    """Size, SHA-256, name and type of an UploadedFile (in memory, or a temporary file past 2.5 MB)."""
    digest = hashlib.sha256()
    for chunk in uploaded.chunks():
        digest.update(chunk)
    attachment.sha256 = digest.hexdigest()
    attachment.size = uploaded.size
    attachment.name = attachment.name or uploaded.name
    attachment.content_type = attachment.content_type or uploaded.content_type or ""


def save_upload(uploaded) -> Attachment:
    """Store an upload under MEDIA_ROOT/uploads/ and record it."""
    attachment = Attachment()
    describe_upload(attachment, uploaded)
    attachment.file.save(uploaded.name, uploaded, save=False)  # reads the upload again, from the start
    attachment.save()
    return attachment
