"""What the HTTP API takes and gives, as pydantic models: the OpenAPI document is made from them, and a
response is checked against its model before it leaves."""
# No `from __future__ import annotations`: pydantic and FastAPI read the annotations at run time.

from typing import Any, Optional, Union

from pydantic import BaseModel, ConfigDict, Field


class ErrorBody(BaseModel):
    """Every error: what went wrong and what to do, and the error's type."""

    error: str = Field(description="what went wrong, and what to do about it")
    type: str = Field(description="the error's type, e.g. UsageError, ItemNotFoundError, Unauthorized")


class HitOut(BaseModel):
    """One search hit (the same fields as `mmr search --json`)."""

    rank: int
    score: float = Field(description="cosine with the query")
    relevance: Optional[float] = Field(description="0..1, comparable across queries and modalities; null: too few "
                                                   "items of this modality to tell")
    modality: str
    path: str
    id: int = Field(description="the item's id (GET /items/{id}, more like it: POST /search {item})")
    locator: dict[str, Any] = Field(description="where in its file: page, section, line, time, window...")
    text: Optional[str] = Field(description="a passage's text; null for pictures and sounds")
    where: str = Field(description="where in its file, as people say it: 'p. 12', '[1:02.5–1:07.0]'")
    start: Optional[float] = Field(description="seconds into its file (sounds, scenes, subtitles)")
    end: Optional[float]
    date: Optional[str] = Field(description="the file's date (EXIF, tag, else its modification time), UTC ISO 8601")
    file_modality: Optional[str] = Field(None, description="its file's, where it differs (a video's scene)")
    moments: Optional[list["HitOut"]] = Field(None, description="with type video: more moments of this video")
    approximate: bool = Field(False, description="its vector came through a migration's bridge from the space "
                                                 "before; replaced by the real one as the migration goes on")


class Filters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    paths: Optional[list[str]] = Field(None, description="folders, files or globs")
    after: Optional[str] = Field(None, description="YYYY-MM-DD[THH:MM]")
    before: Optional[str] = None
    min_size: Optional[Union[int, str]] = Field(None, description="bytes, or like 200K, 2M")
    max_size: Optional[Union[int, str]] = None
    exts: Optional[list[str]] = None


class Part(BaseModel):
    weight: float = 1.0
    modality: str = Field(description="text, or item (value: an item id)")
    value: Union[str, int]


class SearchRequest(BaseModel):
    """A search by `text`, by an indexed `item` (more like it), or by weighted `parts`; exactly one."""

    text: Optional[str] = None
    item: Optional[int] = None
    parts: Optional[list[Part]] = None
    types: Optional[Union[list[str], str]] = Field(None, description="result modalities: image, audio, text, video")
    k: int = 10
    min_relevance: Optional[float] = None
    cutoff: Optional[str] = Field(None, description="none or gap")
    filters: Optional[Filters] = None
    sort: Optional[str] = Field(None, description="relevance, date or path")
    mode: Optional[str] = Field(None, description="vector, keyword or hybrid")


class ItemOut(BaseModel):
    id: int
    modality: str
    path: str
    locator: dict[str, Any]
    text: Optional[str]
    media: str = Field(description="the file itself")
    thumbnail: str


class MemoryOut(BaseModel):
    """A note kept in the index's space (an agent's memory)."""

    id: int
    text: str
    user: Optional[str]
    agent: Optional[str]
    session: Optional[str]
    metadata: dict[str, Any]
    created: str
    updated: str
    embedded: Optional[bool] = Field(None, description="false: waiting to be embedded again after a repair")
    score: Optional[float] = Field(None, description="recall: the rank score (cosine, discounted by age)")
    cosine: Optional[float] = None
    relevance: Optional[float] = None


class Scoped(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: Optional[str] = Field(None, description="whose notes; omitted: any (a new note: none)")
    agent: Optional[str] = None
    session: Optional[str] = None


class RememberRequest(Scoped):
    text: str
    metadata: Optional[dict[str, Any]] = Field(None, description="names to strings, numbers or booleans")
    merge: bool = Field(True, description="a restatement of a note of the same scope updates it")
    merge_above: Optional[float] = Field(None, description="the cosine at which a text restates a note")


class RememberedOut(BaseModel):
    action: str = Field(description="added or updated")
    memory: MemoryOut
    replaced: Optional[str] = Field(None, description="updated: the note's earlier text")
    cosine: Optional[float] = None


class RecallRequest(Scoped):
    query: str
    k: int = 5
    metadata: Optional[dict[str, Any]] = None
    recency: float = Field(0.0, description="0..1: how much age discounts a note")
    half_life_days: float = 7.0


class UpdateRequest(Scoped):
    text: Optional[str] = None
    metadata: Optional[dict[str, Any]] = None


class Forgotten(BaseModel):
    forgotten: int


class IndexRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    paths: list[str] = Field(description="files or folders under the folders the server may index")


class IndexOut(BaseModel):
    files_new: int
    files_changed: int
    files_moved: int
    files_copied: int
    files_removed: int
    files_unchanged: int
    items_added: dict[str, int]
    skipped: list[dict[str, str]] = Field(description="the first 100 files skipped: path and why")
    skipped_count: int
    seconds: float


class Health(BaseModel):
    status: str
    worker: int = Field(description="the process id of the worker that answered (`mmr serve --workers N` runs N)")


class DupeMemberOut(BaseModel):
    item_id: int
    path: str
    locator: dict[str, Any]
    text: Optional[str] = Field(description="a passage's words; null for pictures and sounds")
    size: int = Field(description="the file's bytes")
    date: Optional[float] = Field(description="the file's date, seconds since the epoch")
    items: int = Field(description="how many of the file's items are in the group (a recording's windows)")
    cosine: float = Field(description="cosine with the group's first member")
    likeness: float = Field(description="0..1: how alike its content is to the first member's")
    exact: bool = Field(description="byte-for-byte the same file as another member")


class DupeGroupOut(BaseModel):
    modality: str
    exact: bool = Field(description="every member the same bytes")
    why_first: str = Field(description="why the first member is the one to keep")
    members: list[DupeMemberOut]


class DupesOut(BaseModel):
    groups: list[DupeGroupOut]
    thresholds: dict[str, float] = Field(description="the likeness each modality's pairs had to reach")
    radius: dict[str, float] = Field(description="the cosine candidates were searched within")
    items: dict[str, int]
    searched: int = Field(description="items searched this time (new since the last call)")
    candidates: int
    seconds: float


class ClusterName(BaseModel):
    label: str
    score: float


class ClusterPassage(BaseModel):
    item_id: int
    text: str


class ClusterOut(BaseModel):
    id: int
    name: str
    size: int
    modalities: dict[str, int]
    mixed: bool
    names: list[ClusterName]
    passage: Optional[ClusterPassage] = Field(description="the collection's own passage nearest the cluster")
    members: list[int] = Field(description="item ids, nearest the centre first")


class ClustersOut(BaseModel):
    k: int
    bridged: bool
    items: int
    refitted: bool = Field(description="false: the clusters found before, new items assigned to them")
    seconds: float
    clusters: list[ClusterOut]


class NearestOut(BaseModel):
    item_id: int
    cosine: float


class OutlierOut(BaseModel):
    item_id: int
    path: str
    modality: str
    locator: dict[str, Any]
    score: Optional[float] = Field(description="robust z-score of its distance to its cluster's centre; null: its "
                                               "cluster is one or two items among many")
    cluster: int
    cluster_name: Optional[str]
    nearest: Optional[NearestOut]


class OutliersOut(BaseModel):
    outliers: list[OutlierOut]
    total: int
    items: int
    z: float
    k: int
    typical_nearest: dict[str, Optional[float]] = Field(default_factory=dict)


class MapPoint(BaseModel):
    item_id: int
    x: float
    y: float
    cluster: int
    modality: str


class MapOut(BaseModel):
    points: list[MapPoint]
    names: dict[int, str] = Field(description="cluster id -> name")
