"""FastAPI JSON endpoint: GET /json -> {"message":"Hello, world!"}."""

from fastapi import FastAPI

app = FastAPI()


@app.get("/json")
async def json_view():
    return {"message": "Hello, world!"}
