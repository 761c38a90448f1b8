from __future__ import annotations

import re
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from playground import controls
from playground.models import AuditLog, Block, Conversation, Message, SamplePrompt
from playground.ops import actions, audit


@admin.register(SamplePrompt)
class SamplePromptAdmin(admin.ModelAdmin):
    list_display = ("slug", "title", "expected_answer", "position", "enabled")
    list_editable = ("expected_answer", "position", "enabled")
    search_fields = ("slug", "title", "prompt")


class MessageInline(admin.TabularInline):
    model = Message
    fields = ("role", "status", "prompt", "created", "finished_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ("id", "title", "client_ip", "created")
    search_fields = ("id", "title", "session_key")
    inlines = [MessageInline]


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ("id", "role", "status", "backend", "tokens", "created", "finished_at")
    list_filter = ("status", "role", "backend")
    search_fields = ("id", "prompt", "conversation__id")
    readonly_fields = ("deltas",)
    actions = ["cancel_selected"]

    @admin.action(description="Cancel the selected answers (queued or running)")
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet[Message]) -> None:
        active = queryset.filter(role=Message.Role.ASSISTANT, status__in=Message.ACTIVE)
        cancelled = 0
        for message in active:
            result = actions.cancel(request.user, message, via="admin")
            cancelled += result.status == Message.Status.CANCELLED
        self.message_user(request, f"{cancelled} answer(s) cancelled.", messages.SUCCESS)


class BlockForm(forms.ModelForm):
    class Meta:
        model = Block
        fields = ("kind", "value", "label", "reason", "expires")
        help_texts = {
            "value": "An IP address, or a session key (stored as its SHA-256). Sessions are "
            "easier to block from /ops/ by conversation or message id.",
        }

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        kind, value = cleaned.get("kind"), (cleaned.get("value") or "").strip()
        try:
            if kind == Block.Kind.IP:
                cleaned["value"] = actions.clean_ip(value)
            elif kind == Block.Kind.SESSION and not re.fullmatch(r"[0-9a-f]{64}", value):
                cleaned["value"] = controls.session_fingerprint(value)
        except actions.ControlError as exc:
            self.add_error("value", exc.message)
        return cleaned


@admin.register(Block)
class BlockAdmin(admin.ModelAdmin):
    form = BlockForm
    list_display = ("kind", "label", "reason", "created_by", "created", "expires", "is_active")
    list_filter = ("kind",)
    search_fields = ("label", "value", "reason")
    date_hierarchy = "created"

    @admin.display(boolean=True, description="active")
    def is_active(self, block: Block) -> bool:
        return block.active

    def save_model(self, request: HttpRequest, obj: Block, form: Any, change: bool) -> None:
        if not change:
            obj.created_by = request.user  # type: ignore[assignment]
        super().save_model(request, obj, form, change)
        audit.record(
            request.user,
            "block_changed" if change else "block",
            obj.label or obj.kind,
            until=obj.expires.isoformat(),
            block=obj.pk,
            via="admin",
        )


@admin.register(AuditLog)
class AuditLogAdmin(admin.ModelAdmin):
    """The record of operators' controls: readable by staff, never edited."""

    list_display = ("created", "actor_name", "action", "target", "detail")
    list_filter = ("action",)
    search_fields = ("actor_name", "action", "target")
    date_hierarchy = "created"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
