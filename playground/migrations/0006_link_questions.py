from django.db import migrations

BATCH = 1000


def link_questions(apps, schema_editor) -> None:
    """Before branches, a conversation was one line of questions and an edit could only replace
    the last: every question followed the latest question still shown that was asked before it.
    One pass over every question, conversation by conversation, written in batches."""
    Message = apps.get_model("playground", "Message")
    questions = (
        Message.objects.filter(role="user")
        .order_by("conversation_id", "created", "pk")
        .values_list("pk", "conversation_id", "superseded")
    )
    linked = []
    conversation = shown_so_far = None
    for pk, conversation_id, superseded in questions.iterator(chunk_size=BATCH):
        if conversation_id != conversation:
            conversation, shown_so_far = conversation_id, None
        if shown_so_far is not None:
            linked.append(Message(pk=pk, parent_id=shown_so_far))
        if not superseded:
            shown_so_far = pk
        if len(linked) >= BATCH:
            Message.objects.bulk_update(linked, ["parent"])
            linked = []
    Message.objects.bulk_update(linked, ["parent"])


class Migration(migrations.Migration):
    # Apart from 0005, which adds the column: on PostgreSQL, rows updated in the transaction
    # that adds a foreign key leave trigger events pending, and its index cannot be built.
    dependencies = [
        ("playground", "0005_question_parent"),
    ]

    operations = [
        migrations.RunPython(link_questions, migrations.RunPython.noop),
    ]
