from __future__ import annotations

from django.contrib import admin

from playground.models import Conversation, Message, SamplePrompt


@admin.register(SamplePrompt)
class SamplePromptAdmin(admin.ModelAdmin):
    list_display = ("slug", "title", "expected_answer", "position", "enabled")
    list_editable = ("position", "enabled")


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
