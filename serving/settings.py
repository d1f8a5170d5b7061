"""Runtime settings, read once from ``KILN_*`` environment variables (one place for all of them).

>>> Settings(store="/tmp/models").store
PosixPath('/tmp/models')
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KILN_", extra="ignore")

    store: Path = Field(Path(".kiln/store"), description="model store directory")
    host: str = Field("127.0.0.1", description="address `kiln serve` binds to")
    port: int = Field(3000, ge=1, le=65535)
    workers: int = Field(1, ge=1, description="service worker processes")
    max_upload_bytes: int = Field(10 * 1024 * 1024, ge=1, description="largest request body accepted")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="ONNX Runtime execution device")
    ort_threads: int = Field(0, ge=0, description="ONNX Runtime intra-op threads (0: its default)")
    # Off: busy-waiting ORT threads take the cores that the other requests in flight and the event loop need.
    ort_spinning: bool = Field(False, description="let ONNX Runtime's idle intra-op threads busy-wait for work")
    reload_interval: float = Field(2.0, gt=0, description="seconds between checks of the production pointers")
    tasks: str = Field("", description="comma-separated tasks this server must serve before /readyz is 200")
    max_image_pixels: int = Field(16_000_000, ge=1, description="largest image (width x height) decoded")
    access_log: bool = Field(False, description="log every request (BentoML's access log)")
    trace_requests: bool = Field(False, description="let OpenTelemetry trace the classify routes too")
    max_concurrency: int = Field(64, ge=1, description="requests in flight per worker before 503 + Retry-After")
    max_buffered_bytes: int = Field(
        64 * 1024 * 1024, ge=1, description="request body bytes all requests in flight may hold before 503"
    )
    threads: int = Field(0, ge=0, description="classify requests worked on at once per worker (0: the CPU count)")
    # JSON, e.g. KILN_MIN_CONFIDENCE='{"text": 0.6}'. Scores are calibrated (a temperature fitted on validation
    # is in every exported graph), so 0.6 means about 60% of such answers are right.
    min_confidence: dict[Literal["image", "text"], Annotated[float, Field(ge=0.0, le=1.0)]] = Field(
        default_factory=dict,
        description="per task, the top-1 score below which an answer abstains (label null, abstained true)",
    )

    def inference_threads(self) -> int:
        return self.threads or len(os.sched_getaffinity(0))

    def abstain_below(self, task: str) -> float:
        """The task's min_confidence, 0.0 (never abstain) when it has none."""
        return next((v for k, v in self.min_confidence.items() if k == task), 0.0)

    def required_tasks(self) -> list[str]:
        return [t.strip() for t in self.tasks.split(",") if t.strip()]


def get_settings() -> Settings:
    return Settings()
