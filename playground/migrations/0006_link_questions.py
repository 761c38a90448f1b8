from django.db import migrations


def link_questions(apps, schema_editor) -> None:
    """Before branches, a conversation was one line of questions and an edit could only replace
    the last: every question followed the latest question still shown that was asked before it."""
    Message = apps.get_model("playground", "Message")
    conversation_ids = (
        Message.objects.filter(role="user").values_list("conversation_id", flat=True).distinct()
    )
    for conversation_id in conversation_ids.iterator():
        shown_so_far = None
        questions = Message.objects.filter(conversation_id=conversation_id, role="user")
        for question in questions.order_by("created", "pk"):
            if shown_so_far is not None:
                Message.objects.filter(pk=question.pk).update(parent=shown_so_far)
            if not question.superseded:
                shown_so_far = question.pk


class Migration(migrations.Migration):
    # Apart from 0005, which adds the column: on PostgreSQL, rows updated in the transaction
    # that adds a foreign key leave trigger events pending, and its index cannot be built.
    dependencies = [
        ("playground", "0005_question_parent"),
    ]

    operations = [
        migrations.RunPython(link_questions, migrations.RunPython.noop),
    ]
