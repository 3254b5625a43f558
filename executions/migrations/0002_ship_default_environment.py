"""Ships the `default` job type: no extra packages, 512m, 1.0 CPU, 30 s."""

from django.db import migrations

DEFAULT = {
    "name": "default",
    "requirements": [],
    "memory_limit": "512m",
    "cpu_limit": 1.0,
    "timeout": 30,
    "startup_timeout": 60,
}


def ship(apps, schema_editor):
    Environment = apps.get_model("executions", "Environment")
    Environment.objects.get_or_create(name=DEFAULT["name"], defaults=DEFAULT)


class Migration(migrations.Migration):
    dependencies = [("executions", "0001_initial")]
    operations = [migrations.RunPython(ship, migrations.RunPython.noop)]
