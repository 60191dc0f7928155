"""Language models for the SDR: a LangChain chat model built from config, and the brain that uses it.

`provider: openai` covers OpenAI itself and every OpenAI-compatible server (Azure OpenAI's v1
endpoint, vLLM, Ollama, llama.cpp's server) through `base_url`. `provider: none` is the
deterministic brain and the default when nothing is configured.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class LLMConfig:
    provider: str = "none"        # openai | none
    model: str = "gpt-4o-mini"
    base_url: str | None = None
    api_key: str | None = None
    temperature: float = 0.2

    @property
    def enabled(self) -> bool:
        return self.provider == "openai"


def llm_config(playbook: Any = None, settings: Any = None) -> LLMConfig:
    """The settings (SDR_LLM_*, OPENAI_*) first, then the playbook's `llm:` section. OPENAI_API_KEY or
    OPENAI_BASE_URL alone selects the openai provider. Without `settings`, the environment as it is now."""
    from bot.settings import Settings

    st = settings if settings is not None else Settings.from_env()
    pb = getattr(playbook, "llm", None)
    key = st.secret("openai_api_key") or None
    base_url = st.openai_base_url or (pb.base_url if pb else None)
    provider = st.llm_provider
    if not provider:
        provider = "openai" if (key or st.openai_base_url) else (pb.provider if pb else "none")
    if provider not in ("openai", "none"):
        raise SystemExit(f"llm.provider {provider!r} in the playbook: use 'openai' (any OpenAI-compatible endpoint) "
                         "or 'none'")
    model = st.llm_model or (pb.model if pb and pb.model else "gpt-4o-mini")
    temperature = pb.temperature if pb else 0.2
    return LLMConfig(provider=provider, model=model, base_url=base_url, api_key=key, temperature=temperature)


def build_chat_model(cfg: LLMConfig, timeout_s: float) -> Any:
    """A ChatOpenAI for any OpenAI-compatible endpoint. Retries are ours (inside the turn's deadline),
    so the client's own are off."""
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(model=cfg.model, base_url=cfg.base_url, api_key=cfg.api_key or "not-needed",
                      temperature=cfg.temperature, timeout=timeout_s, max_retries=0, stream_usage=True)


def make_brain(sdr: Any) -> Any:
    """The brain for this SDR: the model brain when a model is configured, else the rule brain."""
    cfg = llm_config(sdr.playbook, sdr.settings)
    if not cfg.enabled:
        return sdr.brain
    from .model_brain import ModelBrain

    return ModelBrain(sdr.playbook, build_chat_model(cfg, sdr.settings.turn_deadline_s), model_name=cfg.model)
