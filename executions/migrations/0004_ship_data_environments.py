"""Ships the job types with packages: data-processing (pandas, numpy) and ml-inference."""

from django.db import migrations

SHIPPED = [
    {
        "name": "data-processing",
        "requirements": ["pandas", "numpy"],
        "memory_limit": "1g",
        "cpu_limit": 2.0,
        "timeout": 60,
        "startup_timeout": 120,
    },
    {
        "name": "ml-inference",
        "requirements": ["numpy", "scikit-learn"],
        "memory_limit": "2g",
        "cpu_limit": 2.0,
        "timeout": 120,
        "startup_timeout": 120,
    },
]


def ship(apps, schema_editor):
    Environment = apps.get_model("executions", "Environment")
    for definition in SHIPPED:
        Environment.objects.get_or_create(name=definition["name"], defaults=definition)


class Migration(migrations.Migration):
    dependencies = [("executions", "0003_environment_build_state")]
    operations = [migrations.RunPython(ship, migrations.RunPython.noop)]
