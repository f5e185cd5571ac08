"""Every setting Atelier reads, from `ATELIER_*` environment variables (or a `.env` file).

The defaults are the embedded mode: SQLite, a local blob folder, a Redis that Atelier starts itself, real model
presets (set `ATELIER_TINY_MODELS=1` for the offline tiny ones). The README lists every variable; a test keeps
that list and this class in step.

Secrets (`*_SECRET*`, `*_TOKEN`) are `SecretStr`, so they never show in reprs or logs, and each may instead be
read from a file named by `<NAME>_FILE` (Docker and Kubernetes secrets), e.g. `ATELIER_S3_SECRET_ACCESS_KEY_FILE`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    """Atelier's configuration; one instance is built by the composition root and passed down."""

    model_config = SettingsConfigDict(env_prefix="ATELIER_", env_file=".env", extra="ignore")

    # Where state lives in the embedded mode.
    data_dir: Path = Field(
        Path("data"),
        description="Folder of everything local: the SQLite file, blobs, model cache, LoRAs, training files and "
        "the embedded Redis (each unless its own setting is given). Processes on one folder share its queue.",
    )

    # Services.
    redis_url: str | None = Field(
        None,
        description="Redis to queue on, e.g. redis://127.0.0.1:6379/0. Unset: the embedded one of "
        "ATELIER_DATA_DIR, started by the first process on that folder and shared by the others.",
    )
    # Both are filled from data_dir when unset (see _local_defaults): strings once Settings is built.
    database_url: str | None = Field(
        None,
        description="tortoise URL: sqlite://… or postgres://… (default: sqlite://<data dir>/atelier.db).",
    )
    blob_url: str | None = Field(
        None,
        description="A local folder, or s3://bucket/prefix for S3-compatible (default: <data dir>/blobs).",
    )
    s3_endpoint_url: str | None = Field(None, description="S3 API endpoint (MinIO, R2, …); unset for AWS.")
    s3_region: str | None = Field(None, description="S3 region.")
    s3_access_key_id: SecretStr | None = Field(None, description="S3 access key id (or ..._FILE).")
    s3_secret_access_key: SecretStr | None = Field(None, description="S3 secret key (or ..._FILE).")

    # Queue and worker.
    queue_name: str = Field("atelier:queue", description="arq queue (Redis sorted set) for image jobs.")
    poll_delay: float = Field(
        0.005, gt=0, description="Seconds between a worker's queue polls (pickup latency)."
    )
    max_jobs: int | None = Field(
        None,
        ge=1,
        description="Jobs one worker takes at once; unset: twice ATELIER_MAX_BATCH (1 without batching).",
    )
    max_batch: int = Field(
        4,
        ge=1,
        description="Most images in one batched text-to-image call (compatible jobs share it); 1: no batching.",
    )
    job_timeout: int = Field(
        1800,
        ge=1,
        description="Seconds a job may run; past it, it is stopped, failed, refunded and its user told.",
    )
    max_tries: int = Field(3, ge=1, description="Times a job is attempted when its worker dies mid-job.")
    routing_wait_s: float = Field(
        5.0,
        ge=0,
        description="Seconds a queued job waits for a worker that has its model resident before any worker "
        "may take it (model-aware routing, jobs.routing); 0: routing off, every worker takes jobs in fair order.",
    )
    train_queue_name: str = Field(
        "atelier:train",
        description="arq queue for LoRA training jobs (served by `atelier worker --queues train`).",
    )
    train_job_timeout: int = Field(
        6 * 3600,
        ge=1,
        description="Seconds a training job may run; past it, it is stopped, failed, refunded and its user told.",
    )

    # Models.
    tiny_models: bool = Field(False, description="Make every default model its tiny, offline counterpart.")
    models_file: Path | None = Field(None, description="Extra TOML presets, added to the built-in registry.")
    model_cache_dir: Path | None = Field(
        None, description="Where weights and tiny models live (data/models)."
    )
    prompt_classifier: str = Field(
        "",
        description="The prompt-safety preset that checks prompts before they are queued (default: the role's, "
        "nsfw-prompt; its tiny counterpart with tiny models); 'off' for word lists only. It runs on the workers: "
        "a worker's setting picks the classifier, a front-end's 'off' sends no prompt to it.",
    )
    prompt_check_wait_s: float = Field(
        5.0,
        gt=0,
        description="Seconds a front-end waits for a worker to classify a prompt; then the word lists alone "
        "apply (logged, counted in atelier_prompt_checks_unanswered_total).",
    )
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N.")
    dtype: str = Field(
        "auto", description="auto (bf16/fp16 on CUDA, fp32 on CPU), float32, float16, bfloat16."
    )
    model_memory_gb: float | None = Field(
        None, gt=0, description="Memory budget for resident pipelines; unset: 75% of the device's memory."
    )
    lora_dir: Path | None = Field(
        None,
        description="Folder of LoRAs, one <name>.safetensors each, used as --lora name:0.8 (data/loras).",
    )

    # Provenance (jobs.signing): every generated image is signed; unset, a local CA is made in <data dir>/c2pa.
    c2pa_key_file: Path | None = Field(None, description="PEM private key that signs images' C2PA manifests.")
    c2pa_cert_file: Path | None = Field(
        None, description="PEM certificate chain of that key, signing certificate first, then its CAs."
    )
    c2pa_trust_file: Path | None = Field(
        None, description="PEM CA certificates `atelier verify` trusts (default: the chain's last one)."
    )

    # Quotas.
    tiers_file: Path | None = Field(
        None,
        description="TOML of tiers (weights, default limits) replacing or adding to free/standard/priority.",
    )
    max_queued_jobs: int = Field(
        1000,
        ge=1,
        description="Unfinished jobs of all servers and workspaces together; past it, requests are told "
        "Atelier is busy and nothing is charged.",
    )
    max_queued_share: float = Field(
        0.25,
        gt=0,
        le=1,
        description="The share of ATELIER_MAX_QUEUED_JOBS one server or workspace may hold (0.25: a quarter).",
    )

    # Retention (jobs.retention; each server or workspace may have its own: `atelier admin retention`).
    retention_images_days: int = Field(
        90, ge=0, le=36500, description="Days output images (and their thumbnails) are kept; 0: forever."
    )
    retention_inputs_days: int = Field(
        7,
        ge=0,
        le=36500,
        description="Days uploaded input images are kept after the job that used them; 0: forever.",
    )
    retention_training_days: int = Field(
        30,
        ge=0,
        le=36500,
        description="Days a training job's dataset and checkpoint are kept after it; 0: forever. The LoRA stays.",
    )

    # Outgoing webhooks of the HTTP API (sent by `atelier api` and `atelier worker` processes; jobs.webhooks).
    webhook_allow_private: bool = Field(
        False,
        description="Let webhooks reach internal addresses (loopback, private, link-local); off: public "
        "addresses only.",
    )
    webhook_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Hosts and networks (CIDR) webhooks may reach although internal, comma-separated, e.g. "
        "hooks.internal,10.1.0.0/16.",
    )
    webhook_timeout_s: float = Field(10.0, gt=0, description="Seconds a webhook receiver has to answer.")
    webhook_retry_s: float = Field(
        30.0,
        gt=0,
        description="Seconds before a failed webhook is retried; the pause doubles with each failure up to an "
        "hour, and attempts stop a day after the event.",
    )

    # Slack app (`atelier slack`, and the worker's Slack replier when the bot token is set).
    slack_bot_token: SecretStr | None = Field(None, description="Slack bot token, xoxb-… (or ..._FILE).")
    slack_signing_secret: SecretStr | None = Field(
        None, description="Slack signing secret; required in HTTP mode (or ..._FILE)."
    )
    slack_app_token: SecretStr | None = Field(
        None, description="Slack app-level token, xapp-…: set, Socket Mode; unset, HTTP mode (or ..._FILE)."
    )
    slack_host: str = Field("0.0.0.0", description="Address the Slack HTTP endpoint listens on (HTTP mode).")
    slack_port: int = Field(3000, ge=1, le=65535, description="Port of the Slack HTTP endpoint (HTTP mode).")
    slack_api_base: str = Field(
        "https://slack.com/api/", description="Slack Web API base URL (GovSlack: https://slack-gov.com/api/)."
    )
    slack_admins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Slack user ids allowed admin actions, comma-separated."
    )
    slack_operators: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Slack user ids of Atelier's operators, comma-separated: in /atelier they may set any tier "
        "and raise limits (workspace admins may only lower them and choose self-service tiers).",
    )
    slack_reactions: dict[str, str] = Field(
        default_factory=lambda: {"mag": "upscale", "sparkles": "faces"},
        description='Reaction name -> action on an Atelier image, as JSON: {"mag": "upscale", "sparkles": "faces"}.',
    )

    # Discord bot (`atelier discord`, and the worker's Discord replier when the token is set).
    discord_token: SecretStr | None = Field(
        None, description="Discord bot token (or ..._FILE); unset: no Discord."
    )
    discord_api_base: str = Field(
        "https://discord.com/api/v10",
        description="Discord REST base URL (an API proxy, or a local emulator).",
    )
    discord_gateway_url: str = Field(
        "wss://gateway.discord.gg/", description="Discord gateway WebSocket URL."
    )
    discord_guild_ids: Annotated[list[int], NoDecode] = Field(
        default_factory=list,
        description="Guild ids, comma-separated: sync commands to these guilds (instant) instead of globally.",
    )
    discord_admin_role: str | None = Field(
        None,
        description="Role id (a number; names are not accepted) whose members may administer the bot, besides "
        "Manage Server.",
    )
    discord_operators: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Discord user ids of Atelier's operators, comma-separated: in /atelier they may set any tier "
        "and raise limits (server admins may only lower them and choose self-service tiers).",
    )

    # Web gallery sign-in (`atelier api` serves /gallery/): each platform's OAuth app, when its client id is set.
    public_url: str | None = Field(
        None,
        description="The address people open the API and gallery at, e.g. https://atelier.example.com: the OAuth "
        "redirect URLs are made from it. Unset: the address each request came to (fine without a proxy).",
    )
    discord_client_id: str | None = Field(
        None, description="Discord application id, for 'Sign in with Discord' to the gallery."
    )
    discord_client_secret: SecretStr | None = Field(
        None, description="Discord OAuth2 client secret (or ..._FILE)."
    )
    discord_authorize_url: str = Field(
        "https://discord.com/oauth2/authorize",
        description="Discord's OAuth2 authorize page (tokens and /users/@me go to ATELIER_DISCORD_API_BASE).",
    )
    slack_client_id: str | None = Field(None, description="Slack app client id, for 'Sign in with Slack'.")
    slack_client_secret: SecretStr | None = Field(None, description="Slack app client secret (or ..._FILE).")
    slack_authorize_url: str = Field(
        "https://slack.com/openid/connect/authorize",
        description="Slack's OpenID Connect authorize page (token and userInfo go to ATELIER_SLACK_API_BASE).",
    )

    # HTTP API (`atelier api`).
    api_host: str = Field("127.0.0.1", description="Address the HTTP API listens on.")
    api_port: int = Field(8080, ge=1, le=65535, description="Port of the HTTP API.")
    api_key_rate: float = Field(
        5.0, gt=0, description="HTTP API requests per second per key, refilled into its token bucket."
    )
    api_key_burst: int = Field(60, ge=1, description="Most HTTP API requests one key may make at once.")
    api_address_rate: float = Field(
        10.0, gt=0, description="HTTP API requests per second per client address, refilled into its bucket."
    )
    api_address_burst: int = Field(
        120, ge=1, description="Most HTTP API requests one client address may make at once."
    )
    api_trusted_proxies: str = Field(
        "",
        description="Reverse proxies in front of the HTTP API (addresses or CIDR networks, comma-separated): "
        "for a request from one, the client address is the one it added to X-Forwarded-For. Unset: the TCP peer.",
    )

    # Observability.
    metrics_host: str = Field("127.0.0.1", description="Address of the /metrics and /healthz server.")
    metrics_port: int = Field(0, ge=0, le=65535, description="Port of /metrics and /healthz; 0 disables it.")
    log_level: str = Field("INFO", description="Python log level.")

    @model_validator(mode="before")
    @classmethod
    def _secrets_from_files(cls, values: dict) -> dict:
        """Fill a secret from the file named by `ATELIER_<NAME>_FILE` when the variable itself is unset."""
        for name in (
            "s3_access_key_id",
            "s3_secret_access_key",
            "slack_bot_token",
            "slack_signing_secret",
            "slack_app_token",
            "discord_token",
            "discord_client_secret",
            "slack_client_secret",
        ):
            file_var = f"ATELIER_{name.upper()}_FILE"
            if values.get(name) is None and os.environ.get(file_var):
                values[name] = Path(os.environ[file_var]).read_text().strip()
        return values

    @model_validator(mode="after")
    def _local_defaults(self) -> Settings:
        """The database and the blob folder live in the data folder unless given: ATELIER_DATA_DIR moves both."""
        if self.database_url is None:
            self.database_url = f"sqlite://{self.data_dir / 'atelier.db'}"
        if self.blob_url is None:
            self.blob_url = str(self.data_dir / "blobs")
        return self

    @model_validator(mode="after")
    def _c2pa_pair(self) -> Settings:
        """A signing key without its certificate (or the reverse) is a mistake to report at start, not at the
        first image."""
        if (self.c2pa_key_file is None) != (self.c2pa_cert_file is None):
            raise ValueError("set both ATELIER_C2PA_KEY_FILE and ATELIER_C2PA_CERT_FILE, or neither")
        return self

    @field_validator("discord_guild_ids", mode="before")
    @classmethod
    def _guild_ids(cls, value: object) -> object:
        """`123,456` (commas or spaces, or a JSON list) -> [123, 456]."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            parts = text.replace(",", " ").split()
            if not all(part.isdigit() for part in parts):
                raise ValueError(f"Discord guild ids must be numbers separated by commas (got {value!r})")
            return [int(part) for part in parts]
        return value

    @field_validator(
        "slack_admins", "slack_operators", "discord_operators", "webhook_allowed_hosts", mode="before"
    )
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        """`U1,U2` (or a JSON list) -> ["U1", "U2"]."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @property
    def models_dir(self) -> Path:
        return self.model_cache_dir or self.data_dir / "models"

    @property
    def loras_dir(self) -> Path:
        return self.lora_dir or self.data_dir / "loras"

    def c2pa_credentials(self):
        """The operator's C2PA signing credentials (jobs.signing), made in <data dir>/c2pa when not configured."""
        from jobs.signing import load_credentials

        return load_credentials(
            key_file=self.c2pa_key_file,
            cert_file=self.c2pa_cert_file,
            trust_file=self.c2pa_trust_file,
            local_dir=self.data_dir / "c2pa",
        )

    def c2pa_trust(self) -> bytes | None:
        """The CA certificates `atelier verify` trusts (jobs.signing.load_trust); None before any exist."""
        from jobs.signing import load_trust

        return load_trust(
            cert_file=self.c2pa_cert_file, trust_file=self.c2pa_trust_file, local_dir=self.data_dir / "c2pa"
        )

    @field_validator("discord_admin_role")
    @classmethod
    def _role_id(cls, value: str | None) -> str | None:
        """A role id: a role name could be copied by anyone who can make a role, so names are refused."""
        if value is not None and value.strip() and not value.strip().isdigit():
            raise ValueError(
                f"ATELIER_DISCORD_ADMIN_ROLE takes the role's id (Server Settings → Roles → Copy Role ID), not a "
                f"name (got {value!r})"
            )
        return value.strip() if value else None

    def retention_days(self):  # -> jobs.retention.RetentionDays
        """The default retention periods, for tenants that have none of their own."""
        from jobs.retention import RetentionDays

        return RetentionDays(
            images=self.retention_images_days,
            inputs=self.retention_inputs_days,
            training=self.retention_training_days,
        )

    def load_tiers(self):  # -> quotas.tiers.Tiers (imported here: settings load before the packages)
        """The tiers in force (`ATELIER_TIERS_FILE`) under the queue cap (`ATELIER_MAX_QUEUED_*`)."""
        from quotas.tiers import QueueCap, Tiers

        return Tiers.load(self.tiers_file, QueueCap(self.max_queued_jobs, self.max_queued_share))

    def secret(self, name: str) -> str | None:
        """The plain value of a secret setting, for the one place that hands it to a client."""
        value: SecretStr | None = getattr(self, name)
        return value.get_secret_value() if value is not None else None
