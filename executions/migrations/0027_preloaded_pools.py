"""Preloaded warm pools: each environment may name modules its pooled interpreters import before a
job arrives, and a pool may be sized from demand (pool_size empty). The shipped environments get
pools sized from demand, and data-processing and ml-inference preload their packages; an
environment an admin changed keeps what they chose."""

import django.core.validators
from django.db import migrations, models

import executions.models

SHIPPED_POOL_SIZES = {"default": 2, "strict": 1, "data-processing": 0, "ml-inference": 0}
SHIPPED_PRELOAD = {
    "data-processing": ["numpy", "pandas", "matplotlib.pyplot"],
    "ml-inference": ["numpy", "sklearn"],
}


def ship(apps, schema_editor):
    Environment = apps.get_model("executions", "Environment")
    for name, size in SHIPPED_POOL_SIZES.items():
        Environment.objects.filter(name=name, pool_size=size).update(pool_size=None)
    for name, modules in SHIPPED_PRELOAD.items():
        Environment.objects.filter(name=name, preload=[]).update(preload=modules)


def unship(apps, schema_editor):
    Environment = apps.get_model("executions", "Environment")
    for name, size in SHIPPED_POOL_SIZES.items():
        Environment.objects.filter(name=name, pool_size=None).update(pool_size=size)
    Environment.objects.filter(pool_size=None).update(pool_size=0)


class Migration(migrations.Migration):
    dependencies = [("executions", "0026_displays_and_matplotlib")]
    operations = [
        migrations.AlterField(
            model_name="environment",
            name="pool_size",
            field=models.PositiveSmallIntegerField(
                blank=True,
                default=0,
                help_text=(
                    "Containers kept started ahead of time on each worker host, so jobs skip the start. "
                    "Empty: as many as the environment's recent peak of concurrent jobs (at least 1); 0: none"
                ),
                null=True,
                validators=[django.core.validators.MaxValueValidator(32)],
            ),
        ),
        migrations.AddField(
            model_name="environment",
            name="preload",
            field=models.JSONField(
                blank=True,
                default=list,
                help_text='Modules the warm pool\'s interpreters import before a job arrives, e.g. ["pandas"]',
                validators=[executions.models._validate_preload],
            ),
        ),
        migrations.AddField(
            model_name="environment",
            name="preload_check",
            field=models.JSONField(blank=True, default=dict, editable=False),
        ),
        migrations.AddField(
            model_name="poolstate",
            name="resident_bytes",
            field=models.PositiveBigIntegerField(default=0),
        ),
        migrations.RunPython(ship, unship),
    ]
