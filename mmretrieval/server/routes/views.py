"""The collection's views: near-duplicates, clusters, outliers and the map (`Engine.dupes` and the rest). Naming
clusters loads the space's text tower: 503 where its weights are missing, as for a text search."""
# No `from __future__ import annotations`: FastAPI reads the route annotations at run time.

from typing import Optional, Union

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from ...errors import UsageError
from ..context import Context, errors
from ..schemas import ClustersOut, DupesOut, MapOut, OutliersOut

router = APIRouter(tags=["views"])
TYPES = Query(None, description="only items of these types (image, audio, text, video); default all")
K = Query("auto", description="clusters: a whole number, or auto (chosen by silhouette)")


def ctx(request: Request) -> Context:
    return request.app.state.ctx


def _k(k: str) -> Union[int, str]:
    if k == "auto":
        return k
    try:
        return int(k)
    except ValueError:
        raise UsageError(f"k must be a positive integer or auto, got {k!r}") from None


@router.get("/dupes", response_model=DupesOut, responses=errors(422))
def dupes(request: Request, type: Optional[list[str]] = TYPES,
          threshold: Optional[float] = Query(None, description="0..1: how alike the content of two copies is at "
                                                                 "least (default: measured per type)"),
          radius: Optional[float] = Query(None, description="cosine within which candidates are searched")):
    """Groups of near-duplicates, largest first, the member to keep first (with the reason)."""
    c = ctx(request)
    with c.reader() as engine:
        return engine.dupes(type or None, threshold=threshold, radius=radius).as_dict()


@router.get("/clusters", response_model=ClustersOut, responses=errors(422, 503))
def clusters(request: Request, type: Optional[list[str]] = TYPES, k: str = K,
             members: int = Query(12, ge=0, le=10_000, description="member ids listed per cluster"),
             bridge: bool = Query(False, description="take each modality's mean direction out first")):
    """k-means clusters of the collection, each named by the built-in vocabulary and its nearest passage."""
    c = ctx(request)
    with c.reader() as engine:
        return engine.clusters(type or None, k=_k(k), bridge=bridge).as_dict(members)


@router.get("/outliers", response_model=OutliersOut, responses=errors(422, 503))
def outliers(request: Request, type: Optional[list[str]] = TYPES, k: str = K,
             z: float = Query(3.5, description="robust z-score of the distance to the cluster's centre, at least"),
             limit: int = Query(50, ge=1, le=10_000)):
    """Items that belong nowhere: far from their cluster's centre, with fewer close neighbours than usual."""
    c = ctx(request)
    with c.reader() as engine:
        return engine.outliers(type or None, k=_k(k), z=z, limit=limit)


@router.get("/map", response_model=MapOut, responses=errors(422, 503))
def map_points(request: Request, type: Optional[list[str]] = TYPES, k: str = K,
               method: str = Query("pca", description="pca, or umap (with umap-learn installed)")):
    """Every item as a point in two dimensions, with its cluster, and the clusters' names."""
    c = ctx(request)
    with c.reader() as engine:
        points, names, _ = engine.views.map(type or None, k=_k(k), method=method)
    return {"points": points, "names": names}


@router.get("/map.png", response_class=Response, responses={
    200: {"content": {"image/png": {}}, "description": "the map, clusters coloured and named"}, **errors(422, 503)})
def map_png(request: Request, type: Optional[list[str]] = TYPES, k: str = K,
            method: str = Query("pca", description="pca, or umap (with umap-learn installed)"),
            width: int = Query(1200, ge=200, le=4000), height: int = Query(900, ge=200, le=4000)):
    c = ctx(request)
    with c.reader() as engine:
        data = engine.map_png(type or None, k=_k(k), method=method, width=width, height=height)
    return Response(data, media_type="image/png", headers={"Cache-Control": "no-store"})
