"""The proxy's settings, validated once at the edge (``slmstack proxy`` builds them)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DEFAULT_LEDGER = "sqlite:///slmstack-proxy.db"
DEFAULT_KEY_ENV = "SLMSTACK_MASK_KEY"


class ProxyConfig(BaseModel):
    """What ``slmstack proxy`` forwards to, where it records, and how it masks and prices.

    Example:
        >>> ProxyConfig(upstream="http://127.0.0.1:8081/v1").ledger
        'sqlite:///slmstack-proxy.db'
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    # The upstream's OpenAI base URL, as a client's base_url: requests to /v1/X go to
    # {upstream}/X.
    upstream: str
    # The ledger's database: the traffic table is written next to the cost ledger.
    ledger: str = DEFAULT_LEDGER
    # Forward this variable's key upstream instead of the client's Authorization header.
    upstream_key_env: str | None = None
    mask: bool = False  # mask personal data before anything is stored
    mask_key_env: str = DEFAULT_KEY_ENV  # the variable holding the Fernet masking key
    mask_tagger: Path | None = None  # an EntityTagger folder whose PER spans are names
    prices: Path | None = None  # a price table over the packaged one
    price_as: str | None = None  # price every call as this model (e.g. gpt-4)
    tokenizer: str | None = None  # counts tokens of streamed answers that carry no usage
    # Shadow mode: task id -> student skill folder; the tasks' templates come from
    # `tasks` (what `slmstack discover --json` prints).
    shadow: dict[str, Path] = Field(default_factory=dict)
    tasks: Path | None = None
    # Serving a promoted task (see slmstack.proxy.serving). The share of the student's
    # answers also sent to the LLM afterwards and compared: 5% of a task's traffic costs
    # little and fills a 200-call audit window in 4,000 requests.
    audit_rate: float = Field(default=0.05, ge=0, le=1)
    # How often the latest promotion decisions are read: `slmstack promote` in another
    # process takes effect within this many seconds, at one small query per period.
    refresh_s: float = Field(default=5.0, gt=0)
    # Demotion weighs the task's last `demote_window` audits since its promotion, once
    # there are `demote_min_n` of them (fewer cannot push the upper bound under a 0.9 bar
    # unless the student is badly wrong).
    demote_window: int = Field(default=200, ge=1)
    demote_min_n: int = Field(default=30, ge=1)
    timeout_s: float = Field(default=600.0, gt=0)  # an LLM answer can take minutes
    max_connections: int = Field(default=256, ge=1)  # pooled connections to the upstream
    batch_size: int = Field(default=256, ge=1)  # exchanges per database write
    flush_every_s: float = Field(default=0.2, gt=0)  # how long a batch waits to fill
    max_queue: int = Field(default=100_000, ge=1)  # unwritten exchanges kept, at most

    @field_validator("upstream")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(
                f"the upstream must be an http(s) URL such as https://api.openai.com/v1; "
                f"got {value!r}"
            )
        return value.rstrip("/")

    @model_validator(mode="after")
    def _demotion(self) -> ProxyConfig:
        if self.demote_min_n > self.demote_window:
            raise ValueError(
                f"demote_min_n ({self.demote_min_n}) must not exceed demote_window "
                f"({self.demote_window}); lower --demote-min-n or raise --demote-window"
            )
        return self


__all__ = ["DEFAULT_KEY_ENV", "DEFAULT_LEDGER", "ProxyConfig"]
