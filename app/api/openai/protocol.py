"""OpenAI-compatible protocol: the wire models of /v1/chat/completions, /v1/models and /v1/audio/transcriptions.
Pydantic only.

The parameters Parley honours are typed and range-checked here (a wrong type or range is a 400 in OpenAI's
error shape, naming the parameter); parameters OpenAI defines that Parley does not use (logprobs, user,
parallel_tool_calls...) and unknown ones are ignored as OpenAI ignores them, and their names logged at debug.
What Parley adds to a response sits in one `parley` object.
"""

import logging
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.dialogue.state import DialogueState

MODEL_ID = "parley"  # always accepted as `model`, besides the configured decoder's id
MAX_CHOICES = 8  # `n`: each choice is a decoded reply; more would hold the decoder for one request
MAX_STOP_SEQUENCES = 4  # as OpenAI
TOOL_NAME = r"^[A-Za-z0-9_-]{1,64}$"  # OpenAI's rule for function names

log = logging.getLogger(__name__)


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


# Requests ---------------------------------------------------------------------------------------------------


class TextPart(_Lenient):
    type: Literal["text"]
    text: str


class ImageURL(_Lenient):
    url: str = Field(description="a data: URL (data:image/png;base64,...); http(s) only for allow-listed hosts")
    detail: str | None = None


class ImagePart(_Lenient):
    type: Literal["image_url"]
    image_url: ImageURL


class InputAudio(_Lenient):
    data: str = Field(description="base64 of the audio file")
    format: Literal["wav", "mp3"]


class AudioPart(_Lenient):
    type: Literal["input_audio"]
    input_audio: InputAudio


ContentPart = Annotated[TextPart | ImagePart | AudioPart, Field(discriminator="type")]


class FunctionCall(_Lenient):
    name: str
    arguments: str = Field(description="the arguments as a JSON object, in a string")


class ToolCallMessage(_Lenient):
    """A tool call as an assistant message carries it (a previous response's `tool_calls`, sent back)."""

    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Lenient):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCallMessage] | None = Field(None, description="assistant messages: the calls it made")
    tool_call_id: str | None = Field(None, description="tool messages: the call this is the output of")


class FunctionDefinition(_Lenient):
    name: str = Field(pattern=TOOL_NAME)
    description: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict, description="a JSON schema of the arguments object")


class ToolDefinition(_Lenient):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(_Lenient):
    name: str = Field(pattern=TOOL_NAME)


class NamedToolChoice(_Lenient):
    type: Literal["function"]
    function: NamedFunction


class ResponseFormat(_Lenient):
    type: Literal["text", "json_object", "json_schema"]


class StreamOptions(_Lenient):
    include_usage: bool = False


class AudioOptions(_Lenient):
    voice: str | None = Field(None, description="ignored: the server speaks with its one voice (PARLEY_TTS)")
    format: Literal["wav"] = "wav"


class ChatCompletionRequest(_Lenient):
    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {"model": MODEL_ID, "messages": [{"role": "user", "content": "My lamp arrived broken, order A7Q-4412"}]},
                {"model": MODEL_ID, "messages": [{"role": "user", "content": [
                    {"type": "text", "text": "here is my receipt"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo..."}},
                ]}]},
                {"model": MODEL_ID, "modalities": ["text", "audio"], "audio": {"voice": "default", "format": "wav"},
                 "messages": [{"role": "user", "content": "Where is my order A7Q-4412?"}]},
                {"model": MODEL_ID, "stream": True, "stream_options": {"include_usage": True},
                 "messages": [{"role": "user", "content": [
                     {"type": "input_audio", "input_audio": {"data": "UklGRiQAAABXQVZF...", "format": "wav"}}]}]},
            ]
        },
    )

    model: str = Field(description=f'"{MODEL_ID}" or the id GET /v1/models lists')
    messages: list[ChatMessage] = Field(min_length=1, description="the conversation; the last user message is "
                                        "answered, or the tool messages that answer the last assistant tool_calls")
    stream: bool = False
    stream_options: StreamOptions | None = None
    modalities: list[Literal["text", "audio"]] | None = Field(
        None, description='["text", "audio"]: the reply is also spoken, in `message.audio` (WAV, base64)')
    audio: AudioOptions | None = None
    max_tokens: int | None = Field(None, ge=1, description="the reply is cut to this many tokens (finish_reason "
                                   '"length"); deprecated by OpenAI for max_completion_tokens, same meaning')
    max_completion_tokens: int | None = Field(None, ge=1, description="as max_tokens; the smaller one wins")
    temperature: float | None = Field(None, ge=0, le=2, description="0 (default): greedy; above: sampled")
    top_p: float | None = Field(None, gt=0, le=1, description="nucleus sampling, with temperature > 0")
    n: int | None = Field(None, ge=1, le=MAX_CHOICES, description="replies to write; more than 1 only without "
                          "X-Session-Id (a session commits one reply per turn)")
    stop: str | list[str] | None = Field(None, description=f"up to {MAX_STOP_SEQUENCES} sequences; the reply ends "
                                         "before the first one")
    seed: int | None = Field(None, description="with temperature > 0: the same seed, the same reply")
    response_format: ResponseFormat | None = Field(None, description='only {"type": "text"}')
    tools: list[ToolDefinition] | None = Field(None, description="functions the client can run; one is called "
                                               "when the dialogue state fills its arguments")
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None

    @field_validator("stop")
    @classmethod
    def _few_stop_sequences(cls, stop: str | list[str] | None) -> str | list[str] | None:
        if isinstance(stop, list) and len(stop) > MAX_STOP_SEQUENCES:
            raise ValueError(f"at most {MAX_STOP_SEQUENCES} stop sequences")
        return stop

    @model_validator(mode="before")
    @classmethod
    def _log_ignored(cls, data: Any) -> Any:
        if isinstance(data, dict) and (ignored := sorted(set(data) - set(cls.model_fields))):
            log.debug("chat completion parameters ignored: %s", ", ".join(map(str, ignored)))
        return data


# Responses --------------------------------------------------------------------------------------------------


class CompletionUsage(BaseModel):
    prompt_tokens: int = Field(examples=[212])
    completion_tokens: int = Field(examples=[18])
    total_tokens: int = Field(examples=[230])


class ParleyExtras(BaseModel):
    """What Parley adds to an OpenAI response: the tracked state and the policy's decision."""

    session_id: str | None = Field(None, description="with X-Session-Id: the native session this turn went to")
    turn: int | None = Field(None, description="with X-Session-Id: the turn's number in its session")
    action: str = Field(examples=["respond"])
    grounded: bool
    transcript: str | None = None
    state: DialogueState


class SpokenReply(BaseModel):
    """OpenAI's `message.audio`: the reply spoken, with what it says."""

    id: str = Field(examples=["audio-5f0c9a1e2b3d4c5e"])
    data: str = Field(description="base64 of the WAV file", examples=["UklGRiQAAABXQVZFZm10..."])
    expires_at: int = Field(description="nothing is kept, so nothing expires later than now", examples=[1795435200])
    transcript: str = Field(examples=["Your order number is A7Q-4412."])


class ToolCallFunction(BaseModel):
    name: str = Field(examples=["lookup_order"])
    arguments: str = Field(examples=['{"order_id": "A7Q-4412"}'], description="JSON of the arguments object")


class ToolCallOut(BaseModel):
    id: str = Field(examples=["call_5f0c9a1e2b3d4c5e6f7a8b9c"])
    type: Literal["function"] = "function"
    function: ToolCallFunction


FinishReason = Literal["stop", "length", "tool_calls"]


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None = Field(examples=["Your order number is A7Q-4412."], description="null with tool_calls")
    tool_calls: list[ToolCallOut] | None = Field(None, description="the call the client should make and answer "
                                                 "with a `tool` message")
    audio: SpokenReply | None = Field(None, description='with modalities ["text", "audio"]')


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: FinishReason = "stop"


class ChatCompletion(BaseModel):
    id: str = Field(examples=["chatcmpl-5f0c9a1e2b3d4c5e"])
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(examples=[1795435200])
    model: str = Field(examples=[MODEL_ID])
    choices: list[Choice]
    usage: CompletionUsage
    parley: ParleyExtras


class ToolCallDelta(ToolCallOut):
    index: int = 0


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None
    audio: SpokenReply | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: FinishReason | None = None


class ChatCompletionChunk(BaseModel):
    """One `data:` line of a streamed completion; the stream ends with `data: [DONE]`."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: CompletionUsage | None = None
    parley: ParleyExtras | None = Field(None, description="on the chunk with finish_reason")


class ModelCard(BaseModel):
    id: str = Field(examples=[MODEL_ID])
    object: Literal["model"] = "model"
    created: int = Field(examples=[1795435200])
    owned_by: str = Field("parley", examples=["parley"])
    parley: dict[str, Any] = Field(default_factory=dict, description="the decoder's source and device")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


# Speech to text: /v1/audio/transcriptions (the request is a form: app/api/openai/transcriptions.py) ------------------


class Transcription(BaseModel):
    """response_format=json"""

    text: str = Field(examples=["My order number is 4512."])


class TranscriptionVerbose(BaseModel):
    """response_format=verbose_json (without segments: the speech encoder transcribes a clip as a whole)"""

    task: Literal["transcribe"] = "transcribe"
    language: str = Field(examples=["english"])
    duration: float = Field(description="seconds of audio", examples=[2.4])
    text: str = Field(examples=["My order number is 4512."])


# Errors -----------------------------------------------------------------------------------------------------


class OpenAIErrorBody(BaseModel):
    message: str = Field(examples=["model 'gpt-4o' does not exist; GET /v1/models lists the models served here"])
    type: str = Field(examples=["invalid_request_error"])
    param: str | None = Field(None, examples=["model"])
    code: str | None = Field(None, examples=["model_not_found"])


class OpenAIErrorResponse(BaseModel):
    error: OpenAIErrorBody
