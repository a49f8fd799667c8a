from django.http import JsonResponse
from django.urls import path


def json_view(request):
    return JsonResponse({"message": "Hello, world!"})


urlpatterns = [path("json", json_view)]
