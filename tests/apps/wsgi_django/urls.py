"""Views: GET /hello/, POST /form/ (urlencoded or multipart), POST /json/, GET /stream/, GET /meta/."""

import hashlib
import json

from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.urls import path


def hello(request):
    return HttpResponse(b"Hello from Django", content_type="text/plain")


def form(request):
    files = {name: {"size": f.size, "sha256": hashlib.sha256(f.read()).hexdigest()} for name, f in request.FILES.items()}
    return JsonResponse({"method": request.method, "post": {k: request.POST.getlist(k) for k in request.POST},
                         "files": files})


def echo_json(request):
    try:
        payload = json.loads(request.body)
    except ValueError:
        return JsonResponse({"error": "bad json"}, status=400)
    return JsonResponse({"received": payload, "content_type": request.content_type})


def stream(request):
    return StreamingHttpResponse((b"part %d\n" % i for i in range(5)), content_type="text/plain")


def meta(request):
    return JsonResponse({"path": request.path, "path_info": request.path_info, "script_name": request.META["SCRIPT_NAME"],
                         "host": request.get_host(), "secure": request.is_secure(), "query": request.GET.dict(),
                         "remote": request.META.get("REMOTE_ADDR")})


urlpatterns = [
    path("hello/", hello),
    path("form/", form),
    path("json/", echo_json),
    path("stream/", stream),
    path("meta/", meta),
]
