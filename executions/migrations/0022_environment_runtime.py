"""Each environment's runtime (runc or runsc, gVisor), the runtimes each engine has, and the shipped `strict` environment:
`default`'s packages and limits under gVisor, with one warm container so its start stays off the
request path."""

from django.db import migrations, models

STRICT = {
    "name": "strict",
    "runtime": "runsc",
    "memory_limit": "512m",
    "cpu_limit": 1.0,
    "timeout": 30,
    "pool_size": 1,
}


def ship_strict(apps, schema_editor):
    Environment = apps.get_model("executions", "Environment")
    Environment.objects.get_or_create(name=STRICT["name"], defaults=STRICT)


class Migration(migrations.Migration):
    dependencies = [("executions", "0021_key_lifecycle_and_shared_limits")]

    operations = [
        migrations.AddField(
            model_name="environment",
            name="runtime",
            field=models.CharField(
                blank=True,
                choices=[
                    ("runc", "runc (Docker's default)"),
                    ("runsc", "runsc (gVisor: a user-space kernel between the program and the host)"),
                ],
                default="",
                max_length=8,
            ),
        ),
        migrations.AddField(
            model_name="circuitbreaker", name="runtimes", field=models.JSONField(blank=True, default=list)
        ),
        migrations.RunPython(ship_strict, migrations.RunPython.noop),
    ]
