"""display() outputs on the record; data-processing ships matplotlib (figures are saved as
artifacts without user code). Only a data-processing still on its shipped packages changes: one an
admin edited keeps what they chose."""

from django.db import migrations, models

SHIPPED_BEFORE = ["pandas", "numpy"]
DATA_PROCESSING_REQUIREMENTS = ["pandas", "numpy", "matplotlib"]


def ship_matplotlib(apps, schema_editor):
    Environment = apps.get_model("executions", "Environment")
    Environment.objects.filter(name="data-processing", requirements=SHIPPED_BEFORE).update(
        requirements=DATA_PROCESSING_REQUIREMENTS
    )


def unship_matplotlib(apps, schema_editor):
    Environment = apps.get_model("executions", "Environment")
    Environment.objects.filter(name="data-processing", requirements=DATA_PROCESSING_REQUIREMENTS).update(
        requirements=SHIPPED_BEFORE
    )


class Migration(migrations.Migration):
    dependencies = [("executions", "0025_input_files")]
    operations = [
        migrations.AddField(model_name="execution", name="displays", field=models.JSONField(default=list)),
        migrations.RunPython(ship_matplotlib, unship_matplotlib),
    ]
