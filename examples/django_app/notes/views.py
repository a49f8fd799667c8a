"""The server-rendered side: a page with two forms, a download and a streaming response."""

import asyncio
import time

from asgiref.sync import sync_to_async
from django.contrib import messages
from django.core.handlers.asgi import ASGIRequest
from django.http import FileResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from notes.forms import NoteForm, UploadForm, save_upload
from notes.models import Attachment, Note


def served_by_asgi(request) -> bool:
    return isinstance(request, ASGIRequest)


@require_http_methods(["GET", "HEAD", "POST"])
def index(request):
    """The notes page. A valid POST saves the note, flashes a message and redirects (POST/redirect/GET)."""
    form = NoteForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        note = form.save()
        request.session["notes_added"] = request.session.get("notes_added", 0) + 1
        messages.success(request, f"Saved note “{note.title}”.")
        return redirect("notes:index")
    return _render_index(request, form=form, status=400 if form.errors else 200)


@require_POST
def upload(request):
    form = UploadForm(request.POST, request.FILES)
    if not form.is_valid():
        return _render_index(request, upload_form=form, status=400)
    attachment = save_upload(form.cleaned_data["file"])
    messages.success(request, f"Uploaded {attachment.name} ({attachment.size} bytes).")
    return redirect("notes:index")


def _render_index(request, form=None, upload_form=None, status=200):
    context = {
        "form": form or NoteForm(),
        "upload_form": upload_form or UploadForm(),
        "notes": Note.objects.all()[:20],
        "attachments": Attachment.objects.all()[:20],
        "notes_added": request.session.get("notes_added", 0),
        "interface": "ASGI" if served_by_asgi(request) else "WSGI",
    }
    return render(request, "notes/index.html", context, status=status)


@require_safe
def download(request, pk):
    attachment = get_object_or_404(Attachment, pk=pk)
    response = FileResponse(attachment.file.open("rb"), as_attachment=True, filename=attachment.name)
    if served_by_asgi(request):
        # Under ASGI, Django reads a FileResponse's whole file into memory before sending it (with a
        # warning). Handing it an async iterator keeps the file streamed in blocks; the headers
        # (Content-Length, Content-Disposition, Content-Type) were set from the file above. Under
        # WSGI the file goes to the server's wsgi.file_wrapper, which sends it without copying.
        response.streaming_content = _read_blocks(response.file_to_stream, response.block_size)
    return response


async def _read_blocks(file, size):
    while block := await sync_to_async(file.read, thread_sensitive=False)(size):
        yield block


@require_safe
def stream(request):
    """A plain-text response produced line by line: ?lines=N (default 5), ?delay=seconds (default 0.2)."""
    lines = min(int(request.GET.get("lines", 5)), 1000)
    delay = min(float(request.GET.get("delay", 0.2)), 5.0)

    def line(i):
        return f"line {i + 1} of {lines} at {time.time():.3f}\n"

    # Give StreamingHttpResponse the kind of iterator the handler consumes: Django drains a sync
    # iterator into a list before sending anything under ASGI (and an async one under WSGI).
    if served_by_asgi(request):
        async def content():
            for i in range(lines):
                if i:
                    await asyncio.sleep(delay)
                yield line(i)
    else:
        def content():
            for i in range(lines):
                if i:
                    time.sleep(delay)
                yield line(i)

    response = StreamingHttpResponse(content(), content_type="text/plain; charset=utf-8")
    response["Cache-Control"] = "no-cache"
    return response
