"""OpenAI-compatible protocol: the wire models of /v1/chat/completions, /v1/models and /v1/audio/transcriptions.
Pydantic only.

Fields OpenAI defines that Parley does not use (temperature, max_tokens, tools...) are accepted and ignored,
so that existing clients work unchanged; what Parley adds sits in one `parley` object.
"""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.dialogue.state import DialogueState

MODEL_ID = "parley"  # always accepted as `model`, besides the configured decoder's id


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


class ChatMessage(_Lenient):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None


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
    messages: list[ChatMessage] = Field(min_length=1, description="the conversation; the last user message is answered")
    stream: bool = False
    stream_options: StreamOptions | None = None
    modalities: list[Literal["text", "audio"]] | None = Field(
        None, description='["text", "audio"]: the reply is also spoken, in `message.audio` (WAV, base64)')
    audio: AudioOptions | None = None


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


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str = Field(examples=["Your order number is A7Q-4412."])
    audio: SpokenReply | None = Field(None, description='with modalities ["text", "audio"]')


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop", "length"] = "stop"


class ChatCompletion(BaseModel):
    id: str = Field(examples=["chatcmpl-5f0c9a1e2b3d4c5e"])
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(examples=[1795435200])
    model: str = Field(examples=[MODEL_ID])
    choices: list[Choice]
    usage: CompletionUsage
    parley: ParleyExtras


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    audio: SpokenReply | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: Literal["stop", "length"] | None = None


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


# Speech to text: /v1/audio/transcriptions (the request is a form: app/api/transcriptions.py) ------------------


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
