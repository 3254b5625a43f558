"""Webhooks: the URL a job is POSTed to when it ends, its deliveries and their attempts, and a
webhook secret per API key (each existing key gets its own, which an admin rotates to see)."""

import uuid

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

import executions.models


def secret_per_key(apps, schema_editor):
    ApiKey = apps.get_model("executions", "ApiKey")
    for key in ApiKey.objects.all():
        key.webhook_secret = executions.models.new_webhook_secret()
        key.save(update_fields=["webhook_secret"])


class Migration(migrations.Migration):
    dependencies = [
        ("executions", "0018_fair_sharing"),
    ]

    operations = [
        migrations.AddField(
            model_name="apikey",
            name="webhook_secret",
            field=models.CharField(default="", editable=False, max_length=64),
        ),
        migrations.RunPython(secret_per_key, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="apikey",
            name="webhook_secret",
            field=models.CharField(default=executions.models.new_webhook_secret, editable=False, max_length=64),
        ),
        migrations.AddField(
            model_name="execution",
            name="webhook_url",
            field=models.CharField(blank=True, default="", max_length=2048),
        ),
        migrations.CreateModel(
            name="WebhookDelivery",
            fields=[
                ("id", models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ("keyed", models.BooleanField(default=False)),
                (
                    "state",
                    models.CharField(
                        choices=[
                            ("waiting", "Waiting"),
                            ("queued", "Queued"),
                            ("sending", "Sending"),
                            ("retrying", "Retrying"),
                            ("delivered", "Delivered"),
                            ("failed", "Failed"),
                        ],
                        default="waiting",
                        max_length=16,
                    ),
                ),
                ("attempts", models.PositiveSmallIntegerField(default=0)),
                ("next_attempt_at", models.DateTimeField(blank=True, null=True)),
                ("state_changed_at", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "api_key",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="webhooks",
                        to="executions.apikey",
                    ),
                ),
                (
                    "execution",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE, related_name="webhook", to="executions.execution"
                    ),
                ),
            ],
            options={
                "verbose_name_plural": "webhook deliveries",
            },
        ),
        migrations.CreateModel(
            name="WebhookAttempt",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("attempt", models.PositiveSmallIntegerField()),
                ("status_code", models.PositiveSmallIntegerField(blank=True, null=True)),
                ("error", models.TextField(blank=True, default="")),
                ("at", models.DateTimeField()),
                ("duration_ms", models.PositiveIntegerField(default=0)),
                (
                    "delivery",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="attempt_log",
                        to="executions.webhookdelivery",
                    ),
                ),
            ],
            options={
                "ordering": ["delivery", "attempt"],
            },
        ),
        migrations.AddIndex(
            model_name="webhookdelivery",
            index=models.Index(fields=["state", "next_attempt_at"], name="webhooks_due"),
        ),
        migrations.AddConstraint(
            model_name="webhookattempt",
            constraint=models.UniqueConstraint(fields=("delivery", "attempt"), name="one_row_per_attempt"),
        ),
    ]
