"""Prompt rendering: a dataset :class:`~rollout.types.Prompt` → the token ids the engine sees.

Uses the tokenizer's chat template when it has one (instruct models), else a plain text template.
Strategies that transform prompts (hints, demonstrations) append to what :meth:`render` returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rollout.types import Prompt


@dataclass
class PromptRenderer:
    tokenizer: Any
    system_prompt: str | None = None
    template: str = "{text}"  # applied to the prompt text before the chat template; may use {text}
    use_chat_template: bool = True

    def user_text(self, prompt: Prompt) -> str:
        return self.template.format(
            text=prompt.text, **{k: v for k, v in prompt.columns.items() if k != "text"}
        )

    def render_text(self, prompt: Prompt) -> str:
        user = self.user_text(prompt)
        if self.use_chat_template and getattr(self.tokenizer, "chat_template", None):
            messages = []
            if self.system_prompt:
                messages.append({"role": "system", "content": self.system_prompt})
            messages.append({"role": "user", "content": user})
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        prefix = f"{self.system_prompt}\n\n" if self.system_prompt else ""
        return f"{prefix}{user}\n"

    def render(self, prompt: Prompt) -> list[int]:
        """Token ids of the prompt; a chat-format data row (``columns["messages"]``) keeps its own messages."""
        messages = prompt.columns.get("messages")
        if messages and self.use_chat_template and getattr(self.tokenizer, "chat_template", None):
            if self.system_prompt and messages[0].get("role") != "system":
                messages = [{"role": "system", "content": self.system_prompt}, *messages]
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return list(self.tokenizer(self.render_text(prompt), add_special_tokens=False)["input_ids"])

    def encode(self, text: str) -> list[int]:
        """Token ids of a continuation (e.g. a hint) to append after :meth:`render`."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
