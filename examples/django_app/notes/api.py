"""A small JSON API: notes (list, create, detail), attachments (list, upload) and an async view.

The POST endpoints are csrf_exempt so that curl or a script can call them; a real API would
authenticate its clients (a token, or a session plus the CSRF header) before letting them write.
"""

import asyncio
import json

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_safe

from notes.forms import NoteForm, UploadForm, save_upload
from notes.models import Attachment, Note
from notes.views import served_by_asgi


@csrf_exempt
@require_http_methods(["GET", "HEAD", "POST"])
def note_list(request):
    if request.method == "GET":
        limit = max(1, min(int(request.GET.get("limit", 50)), 200))
        return JsonResponse({"notes": [note.as_dict() for note in Note.objects.all()[:limit]]})
    try:
        data = json.loads(request.body)
    except ValueError:
        return JsonResponse({"error": "the body is not JSON"}, status=400)
    if not isinstance(data, dict):
        return JsonResponse({"error": "expected a JSON object"}, status=400)
    form = NoteForm(data)
    if not form.is_valid():
        return JsonResponse({"errors": form.errors.get_json_data()}, status=400)
    note = form.save()
    response = JsonResponse(note.as_dict(), status=201)
    response["Location"] = note.as_dict()["url"]
    return response


@require_safe
def note_detail(request, pk):
    note = Note.objects.filter(pk=pk).first()
    if note is None:
        return JsonResponse({"error": f"no note {pk}"}, status=404)
    return JsonResponse(note.as_dict())


@csrf_exempt
@require_http_methods(["GET", "HEAD", "POST"])
def attachment_list(request):
    """GET: the latest uploads. POST: a multipart/form-data upload, field 'file'."""
    if request.method == "GET":
        return JsonResponse({"attachments": [a.as_dict() for a in Attachment.objects.all()[:50]]})
    form = UploadForm(request.POST, request.FILES)
    if not form.is_valid():
        return JsonResponse({"errors": form.errors.get_json_data()}, status=400)
    return JsonResponse(save_upload(form.cleaned_data["file"]).as_dict(), status=201)


@require_safe
async def stats(request):
    """An async view: awaits Django's async ORM (under WSGI, Django runs it in an event loop of its own)."""
    notes, attachments = await asyncio.gather(Note.objects.acount(), Attachment.objects.acount())
    latest = await Note.objects.afirst()
    return JsonResponse({
        "notes": notes,
        "attachments": attachments,
        "latest_note": latest.title if latest else None,
        "interface": "asgi" if served_by_asgi(request) else "wsgi",
    })
