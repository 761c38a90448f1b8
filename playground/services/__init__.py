"""The one place that orchestrates the database, the queue, inference and live events.

Views, consumers, tasks and commands call in here (`services.submit(...)`) and stay thin. Data
flows one way: submit (POST) → queued row → dispatch (slot lease) → Celery task → backend
stream → tag parser → persist (Redis log, then the row) → publish (channel layer) → consumer →
browser.

One module per thing done, lower ones never importing higher ones:

- errors: refusals, error messages, Redis chores that must not fail an answer
- queries: what a visitor may see (ownership, shared links, samples, the chosen answers)
- line: the waiting line, places, wait estimates, the line's turn for writing
- dispatching: the line onto free slots; slot leases rebuilt after Redis restarted empty
- payloads: the public JSON shapes and stream events
- questions: admission and queueing questions (ask, regenerate, edit)
- conversations: renaming, sharing and forgetting conversations
- streaming: the engine of one generation (read, parse, coalesce, publish, watch)
- generation: writing one answer in a worker, storing its outcome
- stopping: a visitor's Stop
- repair: the reconciler and retention
- replay: what a stream viewer gets on connect, and an end it missed

(Modules are named for what they do, not for the verb they export, so that a module and the
verb re-exported here never share a name: `services.submit` is always the function.)
"""

from playground.services.conversations import (
    delete_conversation,
    new_share_link,
    rename,
    revoke_share_link,
)
from playground.services.dispatching import dispatch, is_abandoned, restore_redis_state
from playground.services.errors import (
    ERROR_MESSAGES,
    NO_SUCH_MESSAGE,
    OUTAGE_ERRORS,
    NotFound,
    PlaygroundError,
    error_text,
)
from playground.services.generation import (
    build_model_prompt,
    interrupt_generations,
    run_generation,
)
from playground.services.line import (
    SERVICE_TIMES_KEY,
    estimate_wait_for_new_arrival,
    forget_queue_snapshot,
    place_in,
    position_of,
    publish_queue_positions,
    queue_status,
    waiting_count,
)
from playground.services.payloads import (
    attempt_shown,
    conversation_payload,
    conversation_summary,
    final_event,
    live_sections,
    message_events,
    message_payload,
    message_provenance,
    message_stats,
    share_url,
    shared_payload,
)
from playground.services.queries import (
    HISTORY_LIMIT,
    chosen_answer,
    earlier_answer_to_sample,
    get_owned_conversation,
    get_owned_message,
    get_shared_conversation,
    history,
    note_presence,
    samples,
    turn_versions,
    visible_messages,
)
from playground.services.questions import (
    edit_question,
    regenerate,
    select,
    shortened,
    submit,
    title_for,
)
from playground.services.repair import lease_missing_key, purge_expired, reconcile
from playground.services.replay import (
    StreamState,
    answer_check,
    ended_and_shared,
    final_replay,
    stream_state,
)
from playground.services.stopping import cancel

__all__ = [
    "ERROR_MESSAGES",
    "HISTORY_LIMIT",
    "NO_SUCH_MESSAGE",
    "OUTAGE_ERRORS",
    "SERVICE_TIMES_KEY",
    "NotFound",
    "PlaygroundError",
    "StreamState",
    "answer_check",
    "attempt_shown",
    "build_model_prompt",
    "cancel",
    "chosen_answer",
    "conversation_payload",
    "conversation_summary",
    "delete_conversation",
    "dispatch",
    "earlier_answer_to_sample",
    "edit_question",
    "ended_and_shared",
    "error_text",
    "estimate_wait_for_new_arrival",
    "final_event",
    "final_replay",
    "forget_queue_snapshot",
    "get_owned_conversation",
    "get_owned_message",
    "get_shared_conversation",
    "history",
    "interrupt_generations",
    "is_abandoned",
    "lease_missing_key",
    "live_sections",
    "message_events",
    "message_payload",
    "message_provenance",
    "message_stats",
    "new_share_link",
    "note_presence",
    "place_in",
    "position_of",
    "purge_expired",
    "publish_queue_positions",
    "queue_status",
    "reconcile",
    "regenerate",
    "rename",
    "restore_redis_state",
    "revoke_share_link",
    "run_generation",
    "samples",
    "select",
    "share_url",
    "shared_payload",
    "shortened",
    "stream_state",
    "submit",
    "title_for",
    "turn_versions",
    "visible_messages",
    "waiting_count",
]
