"""An in-process chat model for brain unit tests (pydantic-ai's FunctionModel, LangChain-shaped).

`FunctionChatModel(fn)`: every call runs `fn(messages, tools)` and returns its AIMessage (or
raises what it raises). `bind_tools` keeps the tools so `with_structured_output(...,
method="function_calling")` works the way it does against a real endpoint: the model answers with
a tool call, LangChain parses it into the pydantic type. Nothing crosses a socket; the HTTP fake
(tests/fake_openai.py) stays for 429s, 5xx, timeouts and streaming over the wire.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool


class FunctionChatModel(BaseChatModel):
    fn: Callable[[list[BaseMessage], list[dict[str, Any]]], AIMessage]
    calls: list[list[BaseMessage]] = []

    @property
    def _llm_type(self) -> str:
        return "function-test-model"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        self.calls.append(list(messages))
        msg = self.fn(list(messages), kwargs.get("tools") or [])
        return ChatResult(generations=[ChatGeneration(message=msg)])

    def _stream(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None,
                **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        self.calls.append(list(messages))
        msg = self.fn(list(messages), kwargs.get("tools") or [])
        for word in str(msg.content).split(" "):
            yield ChatGenerationChunk(message=AIMessageChunk(content=word + " "))


def tool_call(name: str, **args: Any) -> AIMessage:
    """An AIMessage calling tool `name` with `args` (what a function-calling model returns)."""
    return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": "call_1", "type": "tool_call"}])


def scripted(*replies: AIMessage | Exception) -> Callable[..., AIMessage]:
    """A model function answering with `replies` in order (an Exception is raised)."""
    queue = list(replies)

    def fn(messages: list[BaseMessage], tools: list[dict[str, Any]]) -> AIMessage:
        item = queue.pop(0)
        if isinstance(item, Exception):
            raise item
        return item
    return fn
