"""Initial schema: every table of the service.

Revision ID: 0001
Revises: 
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('codecs',
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('type', sa.String(length=10), nullable=False),
    sa.Column('passes', sa.JSON(), nullable=False),
    sa.Column('autograph', sa.JSON(), nullable=False),
    sa.Column('profiles', sa.JSON(), nullable=False),
    sa.Column('id', sa.String(length=24), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('users',
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=True),
    sa.Column('first_name', sa.String(length=200), nullable=True),
    sa.Column('last_name', sa.String(length=200), nullable=True),
    sa.Column('billing_address', sa.JSON(), nullable=True),
    sa.Column('profile', sa.JSON(), nullable=True),
    sa.Column('setting', sa.JSON(), nullable=True),
    sa.Column('confirmed_on', sa.BigInteger(), nullable=True),
    sa.Column('changed_email_confirmed', sa.Boolean(), nullable=True),
    sa.Column('id', sa.String(length=24), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('applications',
    sa.Column('user_id', sa.String(length=24), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('client_id', sa.String(length=24), nullable=False),
    sa.Column('secret_encrypted', sa.Text(), nullable=False),
    sa.Column('scopes', sa.String(length=500), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('id', sa.String(length=24), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('client_id')
    )
    with op.batch_alter_table('applications', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_applications_user_id'), ['user_id'], unique=False)

    op.create_table('pipelines',
    sa.Column('user_id', sa.String(length=24), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('is_default', sa.Boolean(), nullable=False),
    sa.Column('cancel_timeout', sa.Integer(), nullable=True),
    sa.Column('default_object_timeout', sa.Integer(), nullable=True),
    sa.Column('enable_backtrace_pings', sa.Boolean(), nullable=True),
    sa.Column('input_download_dir', sa.Text(), nullable=True),
    sa.Column('image_download_dir', sa.Text(), nullable=True),
    sa.Column('output_upload_dir', sa.Text(), nullable=True),
    sa.Column('image_upload_dir', sa.Text(), nullable=True),
    sa.Column('download_options', sa.JSON(), nullable=True),
    sa.Column('upload_options', sa.JSON(), nullable=True),
    sa.Column('store_options', sa.JSON(), nullable=True),
    sa.Column('ping_urls', sa.JSON(), nullable=True),
    sa.Column('file_id', sa.String(length=24), nullable=True),
    sa.Column('id', sa.String(length=24), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('pipelines', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pipelines_user_id'), ['user_id'], unique=False)

    op.create_table('presets',
    sa.Column('user_id', sa.String(length=24), nullable=True),
    sa.Column('type', sa.String(length=10), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('target_format', sa.JSON(), nullable=False),
    sa.Column('settings', sa.JSON(), nullable=True),
    sa.Column('id', sa.String(length=24), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('presets', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_presets_user_id'), ['user_id'], unique=False)

    op.create_table('access_tokens',
    sa.Column('id', sa.String(length=24), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('application_id', sa.String(length=24), nullable=False),
    sa.Column('user_id', sa.String(length=24), nullable=False),
    sa.Column('scopes', sa.String(length=500), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('expires_at', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['application_id'], ['applications.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_hash')
    )
    with op.batch_alter_table('access_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_access_tokens_application_id'), ['application_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_access_tokens_expires_at'), ['expires_at'], unique=False)

    op.create_table('jobs',
    sa.Column('user_id', sa.String(length=24), nullable=False),
    sa.Column('application_id', sa.String(length=24), nullable=True),
    sa.Column('pipeline_id', sa.String(length=24), nullable=True),
    sa.Column('user_data', sa.Text(), nullable=True),
    sa.Column('title', sa.Text(), nullable=True),
    sa.Column('unique_custom_key', sa.String(length=200), nullable=True),
    sa.Column('submitted_keys', sa.JSON(), nullable=False),
    sa.Column('input_name', sa.Text(), nullable=False),
    sa.Column('input_options', sa.JSON(), nullable=False),
    sa.Column('input_file_id', sa.String(length=24), nullable=True),
    sa.Column('input_file_name', sa.Text(), nullable=True),
    sa.Column('autograph', sa.JSON(), nullable=True),
    sa.Column('autograph_enabled', sa.Boolean(), nullable=False),
    sa.Column('output_prefix', sa.Text(), nullable=True),
    sa.Column('playlists', sa.JSON(), nullable=True),
    sa.Column('outputs', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('percentage_completed', sa.Integer(), nullable=False),
    sa.Column('error_msg', sa.Text(), nullable=True),
    sa.Column('error_code', sa.String(length=20), nullable=True),
    sa.Column('finished_at', sa.BigInteger(), nullable=True),
    sa.Column('id', sa.String(length=24), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['application_id'], ['applications.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['pipeline_id'], ['pipelines.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_jobs_pipeline_id'), ['pipeline_id'], unique=False)
        batch_op.create_index('ix_jobs_user_created', ['user_id', 'created_at', 'id'], unique=False)
        batch_op.create_index('ix_jobs_user_status', ['user_id', 'status'], unique=False)

    op.create_table('files',
    sa.Column('user_id', sa.String(length=24), nullable=False),
    sa.Column('application_id', sa.String(length=24), nullable=True),
    sa.Column('pipeline_id', sa.String(length=24), nullable=True),
    sa.Column('job_id', sa.String(length=24), nullable=True),
    sa.Column('storage', sa.String(length=20), nullable=False),
    sa.Column('storage_key', sa.Text(), nullable=True),
    sa.Column('title', sa.Text(), nullable=True),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('type', sa.String(length=10), nullable=False),
    sa.Column('subtype', sa.String(length=20), nullable=True),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('parents', sa.JSON(), nullable=True),
    sa.Column('autograph', sa.Boolean(), nullable=True),
    sa.Column('container', sa.String(length=100), nullable=True),
    sa.Column('mime_type', sa.String(length=100), nullable=True),
    sa.Column('md5_checksum', sa.String(length=32), nullable=True),
    sa.Column('duration', sa.BigInteger(), nullable=True),
    sa.Column('size', sa.BigInteger(), nullable=True),
    sa.Column('size_on_disk', sa.BigInteger(), nullable=True),
    sa.Column('video_tracks', sa.JSON(), nullable=True),
    sa.Column('audio_tracks', sa.JSON(), nullable=True),
    sa.Column('subtitle_tracks', sa.JSON(), nullable=True),
    sa.Column('elements', sa.JSON(), nullable=True),
    sa.Column('user_data', sa.Text(), nullable=True),
    sa.Column('finished_at', sa.BigInteger(), nullable=True),
    sa.Column('expires_at', sa.BigInteger(), nullable=True),
    sa.Column('id', sa.String(length=24), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['application_id'], ['applications.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['pipeline_id'], ['pipelines.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('files', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_files_job_id'), ['job_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_files_pipeline_id'), ['pipeline_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_files_user_id'), ['user_id'], unique=False)

    op.create_table('access_records',
    sa.Column('id', sa.String(length=24), nullable=False),
    sa.Column('user_id', sa.String(length=24), nullable=False),
    sa.Column('application_id', sa.String(length=24), nullable=True),
    sa.Column('job_id', sa.String(length=24), nullable=True),
    sa.Column('file_id', sa.String(length=24), nullable=True),
    sa.Column('tag', sa.String(length=500), nullable=False),
    sa.Column('ip_address', sa.String(length=64), nullable=True),
    sa.Column('ip_country', sa.String(length=100), nullable=True),
    sa.Column('ip_type', sa.String(length=20), nullable=True),
    sa.Column('user_agent', sa.Text(), nullable=True),
    sa.Column('accept_language', sa.Text(), nullable=True),
    sa.Column('first_accessed_at', sa.BigInteger(), nullable=False),
    sa.Column('last_accessed_at', sa.BigInteger(), nullable=False),
    sa.Column('bytes_sent', sa.BigInteger(), nullable=False),
    sa.Column('percentage_obtained', sa.Float(), nullable=False),
    sa.Column('highest_resolution', sa.Integer(), nullable=True),
    sa.Column('streaming_only', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['application_id'], ['applications.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['file_id'], ['files.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('access_records', schema=None) as batch_op:
        batch_op.create_index('ix_access_records_job_tag', ['job_id', 'tag'], unique=False)

    op.create_table('backtraces',
    sa.Column('user_id', sa.String(length=24), nullable=False),
    sa.Column('application_id', sa.String(length=24), nullable=True),
    sa.Column('job_id', sa.String(length=24), nullable=True),
    sa.Column('pipeline_id', sa.String(length=24), nullable=True),
    sa.Column('input_name', sa.Text(), nullable=False),
    sa.Column('file_id', sa.String(length=24), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('percentage_completed', sa.Integer(), nullable=False),
    sa.Column('error_msg', sa.Text(), nullable=True),
    sa.Column('error_code', sa.String(length=20), nullable=True),
    sa.Column('finished_at', sa.BigInteger(), nullable=True),
    sa.Column('id', sa.String(length=24), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['application_id'], ['applications.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['file_id'], ['files.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['pipeline_id'], ['pipelines.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('backtraces', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_backtraces_job_id'), ['job_id'], unique=False)
        batch_op.create_index('ix_backtraces_user_created', ['user_id', 'created_at', 'id'], unique=False)

    op.create_table('backtrace_tags',
    sa.Column('id', sa.String(length=24), nullable=False),
    sa.Column('backtrace_id', sa.String(length=24), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('autograph_tag', sa.String(length=500), nullable=False),
    sa.Column('score', sa.Float(), nullable=True),
    sa.Column('details', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['backtrace_id'], ['backtraces.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('backtrace_tags', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_backtrace_tags_autograph_tag'), ['autograph_tag'], unique=False)
        batch_op.create_index(batch_op.f('ix_backtrace_tags_backtrace_id'), ['backtrace_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('backtrace_tags', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_backtrace_tags_backtrace_id'))
        batch_op.drop_index(batch_op.f('ix_backtrace_tags_autograph_tag'))

    op.drop_table('backtrace_tags')
    with op.batch_alter_table('backtraces', schema=None) as batch_op:
        batch_op.drop_index('ix_backtraces_user_created')
        batch_op.drop_index(batch_op.f('ix_backtraces_job_id'))

    op.drop_table('backtraces')
    with op.batch_alter_table('access_records', schema=None) as batch_op:
        batch_op.drop_index('ix_access_records_job_tag')

    op.drop_table('access_records')
    with op.batch_alter_table('files', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_files_user_id'))
        batch_op.drop_index(batch_op.f('ix_files_pipeline_id'))
        batch_op.drop_index(batch_op.f('ix_files_job_id'))

    op.drop_table('files')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_jobs_user_status')
        batch_op.drop_index('ix_jobs_user_created')
        batch_op.drop_index(batch_op.f('ix_jobs_pipeline_id'))

    op.drop_table('jobs')
    with op.batch_alter_table('access_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_access_tokens_expires_at'))
        batch_op.drop_index(batch_op.f('ix_access_tokens_application_id'))

    op.drop_table('access_tokens')
    with op.batch_alter_table('presets', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_presets_user_id'))

    op.drop_table('presets')
    with op.batch_alter_table('pipelines', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_pipelines_user_id'))

    op.drop_table('pipelines')
    with op.batch_alter_table('applications', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_applications_user_id'))

    op.drop_table('applications')
    op.drop_table('users')
    op.drop_table('codecs')
