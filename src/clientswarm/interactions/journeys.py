"""Running a user-defined interaction: one journey per ``perform``, recorded as one sample.

The journey's sample spans the whole ``run``: sent when it began (its schedule lag is the
journey's), ended when it returned or raised; its tokens are the sum of its LLM steps' and
its first token is the first step's first token (the time to first token of the journey).
It fails with the kind of the step that failed it, or ``client`` for an exception of the
interaction's own code.
"""

from __future__ import annotations

import asyncio
import difflib
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, cast

from pydantic import BaseModel, ValidationError

from clientswarm.config.errors import validation_problems
from clientswarm.config.interactions import CustomInteraction
from clientswarm.config.paths import ANYWHERE, FileScope
from clientswarm.errors import ConfigError
from clientswarm.interactions.base import ClientContext
from clientswarm.interactions.http import classify_exception
from clientswarm.interactions.loader import resolve
from clientswarm.interactions.streaming import MAX_ERROR_MESSAGE
from clientswarm.interactions.user import Context, Interaction, NoParams, StepFailed
from clientswarm.metrics.sample import ERROR_CANCELLED, Sample


class _FunctionInteraction(Interaction):
    """A plain ``async def name(ctx)`` as an interaction without parameters."""

    def __init__(self, params: BaseModel, run: Callable[[Context], Awaitable[None]]) -> None:
        super().__init__(params)
        self._run = run

    async def run(self, ctx: Context) -> None:
        """Call the function."""
        await self._run(ctx)


def params_model(found: Any) -> type[BaseModel]:
    """The parameter model of a resolved interaction (functions take none)."""
    if inspect.isclass(found):
        model = getattr(found, "Params", NoParams)
        if not (inspect.isclass(model) and issubclass(model, BaseModel)):
            raise ConfigError([f"kind: {found.__name__}.Params is not a pydantic BaseModel"])
        return model
    return NoParams


def validate_params(found: Any, config: CustomInteraction) -> BaseModel:
    """The interaction's validated parameters; ConfigError naming each bad one."""
    model = params_model(found)
    unknown: list[str] = []
    if inspect.isclass(found) and model.model_config.get("extra") != "allow":
        known = set(model.model_fields) | {
            f.alias for f in model.model_fields.values() if f.alias is not None
        }
        for name in config.params:
            if name not in known:
                close = difflib.get_close_matches(name, sorted(known), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                valid = ", ".join(model.model_fields) or "none"
                unknown.append(f"{name}: unknown parameter{hint}; valid parameters: {valid}")
    try:
        params = model.model_validate(config.params)
    except ValidationError as exc:
        problems = unknown + validation_problems(exc, model=model)
        if not inspect.isclass(found) and config.params:
            problems = [
                f"{', '.join(config.params)}: a function interaction takes no parameters; "
                "write an Interaction subclass with a Params model to take some"
            ]
        raise ConfigError(problems) from None
    if unknown:
        raise ConfigError(unknown)
    return params


class UserInteraction:
    """A user-defined interaction behind the worker's interaction protocol."""

    def __init__(self, config: CustomInteraction, *, seed: int = 0, files: FileScope = ANYWHERE):
        found = resolve(config, files=files)
        params = validate_params(found, config)
        if inspect.isclass(found):
            cls = cast(type[Interaction], found)
            self._setup(lambda: cls(params), config.name or found.__name__)
        else:
            self._setup(lambda: _FunctionInteraction(params, found), config.name or found.__name__)

    def _setup(self, factory: Callable[[], Interaction], kind: str) -> None:
        self.kind = kind
        self._new = factory
        self._instances: dict[int, Interaction] = {}  # one per client, after its on_start

    async def _instance(self, ctx: Context) -> Interaction:
        instance = self._instances.get(ctx.client)
        if instance is None:
            instance = self._new()
            await instance.on_start(ctx)
            self._instances[ctx.client] = instance  # only once on_start succeeded
        return instance

    async def perform(self, ctx: ClientContext, scheduled_ns: int) -> None:
        """Run one journey and record it (its steps record themselves)."""
        journey = Context(ctx)
        started_ns = ctx.clock.now_ns()
        error: tuple[str, str] | None = None
        try:
            instance = await self._instance(journey)
            await instance.run(journey)
        except asyncio.CancelledError:
            error = (ERROR_CANCELLED, "the run stopped while the journey was in progress")
            ctx.emit(self._sample(journey, scheduled_ns, started_ns, error))
            raise
        except StepFailed as exc:
            error = (exc.kind, str(exc))
        except Exception as exc:
            error = classify_exception(exc, ctx.target.timeout_s)
        ctx.emit(self._sample(journey, scheduled_ns, started_ns, error))

    def _sample(
        self,
        journey: Context,
        scheduled_ns: int,
        started_ns: int,
        error: tuple[str, str] | None,
    ) -> Sample:
        summed = journey.journey
        first = summed.steps[0] if summed.steps else None
        return Sample(
            group=journey.group,
            client=journey.client,
            worker=journey.worker,
            name=self.kind,
            scheduled_ns=scheduled_ns,
            sent_ns=started_ns,
            end_ns=journey.now_ns(),
            status="ok" if error is None else "error",
            first_token_ns=summed.first_token_ns,
            input_tokens=summed.input_tokens,
            output_tokens=summed.output_tokens,
            token_source=first.token_source if first is not None else None,
            error_kind=error[0] if error else None,
            error_message=error[1][:MAX_ERROR_MESSAGE] if error else None,
        )
