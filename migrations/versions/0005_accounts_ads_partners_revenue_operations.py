"""accounts ads partners revenue operations

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 10:17:57.132894
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


import server.models.base

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('advertisers',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('billing_mode', sa.Enum('prepaid', 'monthly', name='billingmode', native_enum=False, length=16), nullable=False),
    sa.Column('lost_spot_policy', sa.Enum('make_good', 'credit', name='lostspotpolicy', native_enum=False, length=16), nullable=False),
    sa.Column('created_at', server.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_advertisers')),
    sa.UniqueConstraint('name', name=op.f('uq_advertisers_name'))
    )
    op.create_table('venue_prices',
    sa.Column('venue_type', sa.String(length=16), nullable=False),
    sa.Column('fen_per_spot_day', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', server.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint('fen_per_spot_day > 0', name=op.f('ck_venue_prices_price_positive')),
    sa.PrimaryKeyConstraint('venue_type', name=op.f('pk_venue_prices'))
    )
    op.create_table('bookings',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('advertiser_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('status', sa.Enum('draft', 'held', 'confirmed', 'released', 'expired', name='bookingstatus', native_enum=False, length=16), nullable=False),
    sa.Column('spots_per_loop', sa.SmallInteger(), nullable=False),
    sa.Column('start_date', sa.Date(), nullable=False),
    sa.Column('end_date', sa.Date(), nullable=False),
    sa.Column('dayparts', sa.String(length=200), nullable=False),
    sa.Column('selection', sa.Text(), nullable=False),
    sa.Column('price_fen', sa.BigInteger(), nullable=False),
    sa.Column('held_until', server.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('confirmed_at', server.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('ended_at', server.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('created_at', server.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', server.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['advertiser_id'], ['advertisers.id'], name=op.f('fk_bookings_advertiser_id_advertisers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bookings'))
    )
    op.create_index(op.f('ix_bookings_advertiser_id'), 'bookings', ['advertiser_id'], unique=False)
    op.create_index(op.f('ix_bookings_status'), 'bookings', ['status'], unique=False)
    op.create_table('creatives',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('advertiser_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('body_text', sa.Text(), nullable=False),
    sa.Column('declared_text', sa.Text(), nullable=False),
    sa.Column('kind', sa.Enum('image', 'video', name='creativekind', native_enum=False, length=8), nullable=False),
    sa.Column('duration_ms', sa.Integer(), nullable=False),
    sa.Column('media_url', sa.String(length=1024), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('status', sa.Enum('pending', 'approved', 'rejected', name='creativestatus', native_enum=False, length=16), nullable=False),
    sa.Column('check_rule', sa.String(length=64), nullable=True),
    sa.Column('check_match', sa.String(length=200), nullable=True),
    sa.Column('review_note', sa.String(length=500), nullable=True),
    sa.Column('reviewed_by', sa.String(length=120), nullable=True),
    sa.Column('reviewed_at', server.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', server.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', server.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['advertiser_id'], ['advertisers.id'], name=op.f('fk_creatives_advertiser_id_advertisers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_creatives'))
    )
    op.create_index(op.f('ix_creatives_advertiser_id'), 'creatives', ['advertiser_id'], unique=False)
    op.create_index(op.f('ix_creatives_status'), 'creatives', ['status'], unique=False)
    op.create_table('partner_statements',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('partner_id', sa.Integer(), nullable=False),
    sa.Column('cycle', sa.Enum('weekly', 'monthly', name='settlementcycle', native_enum=False, length=16), nullable=False),
    sa.Column('period_start', sa.Date(), nullable=False),
    sa.Column('period_end', sa.Date(), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('rate_bp', sa.Integer(), nullable=False),
    sa.Column('ad_revenue_fen', sa.BigInteger(), nullable=False),
    sa.Column('forfeited_fen', sa.BigInteger(), nullable=False),
    sa.Column('credits_fen', sa.BigInteger(), nullable=False),
    sa.Column('carried_in_fen', sa.BigInteger(), nullable=False),
    sa.Column('base_fen', sa.BigInteger(), nullable=False),
    sa.Column('share_fen', sa.BigInteger(), nullable=False),
    sa.Column('carried_out_fen', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.Enum('issued', 'nothing_due', 'paid', name='statementstatus', native_enum=False, length=16), nullable=False),
    sa.Column('out_order_no', sa.String(length=64), nullable=True),
    sa.Column('payout_order_id', sa.String(length=64), nullable=True),
    sa.Column('payout_transaction_id', sa.String(length=32), nullable=True),
    sa.Column('paid_at', server.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', server.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("(status = 'paid' AND paid_at IS NOT NULL AND payout_order_id IS NOT NULL) OR (status <> 'paid' AND paid_at IS NULL)", name=op.f('ck_partner_statements_paid_has_order')),
    sa.CheckConstraint('base_fen = ad_revenue_fen + forfeited_fen - credits_fen + carried_in_fen', name=op.f('ck_partner_statements_base_adds_up')),
    sa.CheckConstraint('carried_in_fen <= 0', name=op.f('ck_partner_statements_carried_in_not_positive')),
    sa.CheckConstraint('carried_out_fen <= 0', name=op.f('ck_partner_statements_carried_out_not_positive')),
    sa.CheckConstraint('period_start <= period_end', name=op.f('ck_partner_statements_period_ordered')),
    sa.CheckConstraint('share_fen >= 0', name=op.f('ck_partner_statements_share_not_negative')),
    sa.ForeignKeyConstraint(['partner_id'], ['partners.id'], name=op.f('fk_partner_statements_partner_id_partners')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_partner_statements')),
    sa.UniqueConstraint('out_order_no', name=op.f('uq_partner_statements_out_order_no')),
    sa.UniqueConstraint('partner_id', 'period_start', name='uq_partner_statements_period')
    )
    op.create_index(op.f('ix_partner_statements_partner_id'), 'partner_statements', ['partner_id'], unique=False)
    op.create_index(op.f('ix_partner_statements_status'), 'partner_statements', ['status'], unique=False)
    op.create_table('users',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('login', sa.String(length=120), nullable=False),
    sa.Column('display_name', sa.String(length=120), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('role', sa.Enum('operator', 'partner', 'advertiser', name='role', native_enum=False, length=16), nullable=False),
    sa.Column('advertiser_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('partner_id', sa.Integer(), nullable=True),
    sa.Column('created_at', server.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("(role = 'operator' AND advertiser_id IS NULL AND partner_id IS NULL) OR (role = 'advertiser' AND advertiser_id IS NOT NULL AND partner_id IS NULL) OR (role = 'partner' AND partner_id IS NOT NULL AND advertiser_id IS NULL)", name=op.f('ck_users_one_tenant')),
    sa.ForeignKeyConstraint(['advertiser_id'], ['advertisers.id'], name=op.f('fk_users_advertiser_id_advertisers')),
    sa.ForeignKeyConstraint(['partner_id'], ['partners.id'], name=op.f('fk_users_partner_id_partners')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('login', name=op.f('uq_users_login'))
    )
    op.create_index(op.f('ix_users_advertiser_id'), 'users', ['advertiser_id'], unique=False)
    op.create_index(op.f('ix_users_partner_id'), 'users', ['partner_id'], unique=False)
    op.create_table('alerts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('partner_id', sa.Integer(), nullable=False),
    sa.Column('kiosk_id', sa.String(length=32), nullable=False),
    sa.Column('kind', sa.Enum('offline', 'nearly_empty', 'nearly_full', 'slot_faulty', name='alertkind', native_enum=False, length=16), nullable=False),
    sa.Column('slot_no', sa.Integer(), nullable=False),
    sa.Column('message', sa.String(length=255), nullable=False),
    sa.Column('opened_at', server.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('closed_at', server.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('acked_at', server.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('acked_by', sa.String(length=120), nullable=True),
    sa.CheckConstraint('slot_no >= 0', name=op.f('ck_alerts_slot_no_not_negative')),
    sa.ForeignKeyConstraint(['kiosk_id'], ['kiosks.id'], name=op.f('fk_alerts_kiosk_id_kiosks')),
    sa.ForeignKeyConstraint(['partner_id'], ['partners.id'], name=op.f('fk_alerts_partner_id_partners')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alerts'))
    )
    op.create_index('ix_alerts_partner_closed', 'alerts', ['partner_id', 'closed_at'], unique=False)
    op.create_index('uq_alerts_one_open', 'alerts', ['kiosk_id', 'kind', 'slot_no'], unique=True, sqlite_where=sa.text('closed_at IS NULL'), postgresql_where=sa.text('closed_at IS NULL'))
    op.create_table('booking_creatives',
    sa.Column('booking_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('creative_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['booking_id'], ['bookings.id'], name=op.f('fk_booking_creatives_booking_id_bookings')),
    sa.ForeignKeyConstraint(['creative_id'], ['creatives.id'], name=op.f('fk_booking_creatives_creative_id_creatives')),
    sa.PrimaryKeyConstraint('booking_id', 'creative_id', name=op.f('pk_booking_creatives'))
    )
    op.create_index(op.f('ix_booking_creatives_creative_id'), 'booking_creatives', ['creative_id'], unique=False)
    op.create_table('booking_kiosks',
    sa.Column('booking_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('kiosk_id', sa.String(length=32), nullable=False),
    sa.Column('days', sa.Integer(), nullable=False),
    sa.Column('price_fen', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['booking_id'], ['bookings.id'], name=op.f('fk_booking_kiosks_booking_id_bookings')),
    sa.ForeignKeyConstraint(['kiosk_id'], ['kiosks.id'], name=op.f('fk_booking_kiosks_kiosk_id_kiosks')),
    sa.PrimaryKeyConstraint('booking_id', 'kiosk_id', name=op.f('pk_booking_kiosks'))
    )
    op.create_index(op.f('ix_booking_kiosks_kiosk_id'), 'booking_kiosks', ['kiosk_id'], unique=False)
    op.create_table('delivery_days',
    sa.Column('booking_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('kiosk_id', sa.String(length=32), nullable=False),
    sa.Column('local_date', sa.Date(), nullable=False),
    sa.Column('played', sa.Integer(), nullable=False),
    sa.Column('make_good_played', sa.Integer(), nullable=False),
    sa.Column('booked', sa.Integer(), nullable=True),
    sa.Column('lost', sa.Integer(), nullable=True),
    sa.Column('settled_at', server.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.CheckConstraint('lost IS NULL OR lost >= 0', name=op.f('ck_delivery_days_lost_not_negative')),
    sa.ForeignKeyConstraint(['booking_id'], ['bookings.id'], name=op.f('fk_delivery_days_booking_id_bookings')),
    sa.ForeignKeyConstraint(['kiosk_id'], ['kiosks.id'], name=op.f('fk_delivery_days_kiosk_id_kiosks')),
    sa.PrimaryKeyConstraint('booking_id', 'kiosk_id', 'local_date', name=op.f('pk_delivery_days'))
    )
    op.create_index('ix_delivery_days_kiosk_date', 'delivery_days', ['kiosk_id', 'local_date'], unique=False)
    op.create_table('invoices',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('advertiser_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('kind', sa.Enum('prepaid_order', 'monthly_statement', name='invoicekind', native_enum=False, length=32), nullable=False),
    sa.Column('booking_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('period_start', sa.Date(), nullable=False),
    sa.Column('period_end', sa.Date(), nullable=False),
    sa.Column('issued_on', sa.Date(), nullable=False),
    sa.Column('due_on', sa.Date(), nullable=False),
    sa.Column('subtotal_fen', sa.BigInteger(), nullable=False),
    sa.Column('credits_fen', sa.BigInteger(), nullable=False),
    sa.Column('total_fen', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.Enum('issued', 'paid', name='invoicestatus', native_enum=False, length=16), nullable=False),
    sa.Column('paid_at', server.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('payment_reference', sa.String(length=128), nullable=True),
    sa.Column('created_at', server.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("(kind = 'prepaid_order' AND booking_id IS NOT NULL) OR (kind = 'monthly_statement' AND booking_id IS NULL)", name=op.f('ck_invoices_booking_iff_order')),
    sa.CheckConstraint("(status = 'paid' AND paid_at IS NOT NULL AND payment_reference IS NOT NULL) OR (status = 'issued' AND paid_at IS NULL AND payment_reference IS NULL)", name=op.f('ck_invoices_paid_has_reference')),
    sa.CheckConstraint('credits_fen >= 0', name=op.f('ck_invoices_credits_not_negative')),
    sa.CheckConstraint('period_start <= period_end', name=op.f('ck_invoices_period_ordered')),
    sa.CheckConstraint('subtotal_fen >= 0', name=op.f('ck_invoices_subtotal_not_negative')),
    sa.CheckConstraint('total_fen = subtotal_fen - credits_fen', name=op.f('ck_invoices_total_adds_up')),
    sa.CheckConstraint('total_fen >= 0', name=op.f('ck_invoices_total_not_negative')),
    sa.ForeignKeyConstraint(['advertiser_id'], ['advertisers.id'], name=op.f('fk_invoices_advertiser_id_advertisers')),
    sa.ForeignKeyConstraint(['booking_id'], ['bookings.id'], name=op.f('fk_invoices_booking_id_bookings')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_invoices')),
    sa.UniqueConstraint('booking_id', name=op.f('uq_invoices_booking_id'))
    )
    op.create_index(op.f('ix_invoices_advertiser_id'), 'invoices', ['advertiser_id'], unique=False)
    op.create_index(op.f('ix_invoices_status'), 'invoices', ['status'], unique=False)
    op.create_index('uq_invoices_statement_period', 'invoices', ['advertiser_id', 'kind', 'period_start'], unique=True, postgresql_where=sa.text("kind = 'monthly_statement'"), sqlite_where=sa.text("kind = 'monthly_statement'"))
    op.create_table('loop_hours',
    sa.Column('kiosk_id', sa.String(length=32), nullable=False),
    sa.Column('starts_at', server.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('capacity', sa.SmallInteger(), nullable=False),
    sa.Column('sold', sa.SmallInteger(), nullable=False),
    sa.CheckConstraint('sold <= capacity', name=op.f('ck_loop_hours_not_oversold')),
    sa.CheckConstraint('sold >= 0', name=op.f('ck_loop_hours_sold_not_negative')),
    sa.ForeignKeyConstraint(['kiosk_id'], ['kiosks.id'], name=op.f('fk_loop_hours_kiosk_id_kiosks')),
    sa.PrimaryKeyConstraint('kiosk_id', 'starts_at', name=op.f('pk_loop_hours'))
    )
    op.create_table('make_goods',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('booking_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('kiosk_id', sa.String(length=32), nullable=False),
    sa.Column('local_date', sa.Date(), nullable=False),
    sa.Column('spots_owed', sa.Integer(), nullable=False),
    sa.Column('created_at', server.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint('spots_owed > 0', name=op.f('ck_make_goods_spots_owed_positive')),
    sa.ForeignKeyConstraint(['booking_id'], ['bookings.id'], name=op.f('fk_make_goods_booking_id_bookings')),
    sa.ForeignKeyConstraint(['kiosk_id'], ['kiosks.id'], name=op.f('fk_make_goods_kiosk_id_kiosks')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_make_goods')),
    sa.UniqueConstraint('booking_id', 'kiosk_id', 'local_date', name='uq_make_goods_day')
    )
    op.create_index(op.f('ix_make_goods_kiosk_id'), 'make_goods', ['kiosk_id'], unique=False)
    op.create_table('partner_statement_lines',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('statement_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('kiosk_id', sa.String(length=32), nullable=False),
    sa.Column('ad_revenue_fen', sa.BigInteger(), nullable=False),
    sa.Column('forfeited_fen', sa.BigInteger(), nullable=False),
    sa.Column('credits_fen', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['statement_id'], ['partner_statements.id'], name=op.f('fk_partner_statement_lines_statement_id_partner_statements')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_partner_statement_lines')),
    sa.UniqueConstraint('statement_id', 'kiosk_id', name='uq_partner_statement_lines_kiosk')
    )
    op.create_index(op.f('ix_partner_statement_lines_statement_id'), 'partner_statement_lines', ['statement_id'], unique=False)
    op.create_table('playlist_versions',
    sa.Column('kiosk_id', sa.String(length=32), nullable=False),
    sa.Column('version', sa.BigInteger(), nullable=False),
    sa.Column('starts_at', server.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ends_at', server.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('spot_count', sa.Integer(), nullable=False),
    sa.Column('compiled_at', server.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('cmd_id', sa.String(length=64), nullable=False),
    sa.Column('published_at', server.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('acked_at', server.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('ack_result', sa.String(length=16), nullable=True),
    sa.ForeignKeyConstraint(['kiosk_id'], ['kiosks.id'], name=op.f('fk_playlist_versions_kiosk_id_kiosks')),
    sa.PrimaryKeyConstraint('kiosk_id', 'version', name=op.f('pk_playlist_versions')),
    sa.UniqueConstraint('cmd_id', name=op.f('uq_playlist_versions_cmd_id'))
    )
    op.create_table('plays',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('kiosk_id', sa.String(length=32), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('booking_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('creative_id', sa.BigInteger(), nullable=True),
    sa.Column('make_good', sa.Boolean(), nullable=False),
    sa.Column('started_at', server.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('local_date', sa.Date(), nullable=False),
    sa.Column('duration_ms', sa.Integer(), nullable=False),
    sa.Column('playlist_version', sa.BigInteger(), nullable=False),
    sa.Column('received_at', server.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['booking_id'], ['bookings.id'], name=op.f('fk_plays_booking_id_bookings')),
    sa.ForeignKeyConstraint(['kiosk_id'], ['kiosks.id'], name=op.f('fk_plays_kiosk_id_kiosks')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_plays'))
    )
    op.create_index('ix_plays_booking_kiosk_date', 'plays', ['booking_id', 'kiosk_id', 'local_date'], unique=False)
    op.create_index('ix_plays_kiosk_started', 'plays', ['kiosk_id', 'started_at'], unique=False)
    op.create_table('rebalancing_tasks',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('partner_id', sa.Integer(), nullable=False),
    sa.Column('from_kiosk_id', sa.String(length=32), nullable=False),
    sa.Column('to_kiosk_id', sa.String(length=32), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('status', sa.Enum('open', 'done', name='taskstatus', native_enum=False, length=16), nullable=False),
    sa.Column('note', sa.String(length=500), nullable=False),
    sa.Column('created_at', server.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=120), nullable=False),
    sa.Column('done_at', server.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('done_by', sa.String(length=120), nullable=True),
    sa.CheckConstraint('from_kiosk_id <> to_kiosk_id', name=op.f('ck_rebalancing_tasks_two_kiosks')),
    sa.CheckConstraint('quantity > 0', name=op.f('ck_rebalancing_tasks_quantity_positive')),
    sa.ForeignKeyConstraint(['from_kiosk_id'], ['kiosks.id'], name=op.f('fk_rebalancing_tasks_from_kiosk_id_kiosks')),
    sa.ForeignKeyConstraint(['partner_id'], ['partners.id'], name=op.f('fk_rebalancing_tasks_partner_id_partners')),
    sa.ForeignKeyConstraint(['to_kiosk_id'], ['kiosks.id'], name=op.f('fk_rebalancing_tasks_to_kiosk_id_kiosks')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rebalancing_tasks'))
    )
    op.create_index('ix_rebalancing_tasks_partner_status', 'rebalancing_tasks', ['partner_id', 'status'], unique=False)
    op.create_table('reservations',
    sa.Column('booking_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('kiosk_id', sa.String(length=32), nullable=False),
    sa.Column('starts_at', server.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('spots', sa.SmallInteger(), nullable=False),
    sa.CheckConstraint('spots > 0', name=op.f('ck_reservations_spots_positive')),
    sa.ForeignKeyConstraint(['booking_id'], ['bookings.id'], name=op.f('fk_reservations_booking_id_bookings')),
    sa.ForeignKeyConstraint(['kiosk_id'], ['kiosks.id'], name=op.f('fk_reservations_kiosk_id_kiosks')),
    sa.PrimaryKeyConstraint('booking_id', 'kiosk_id', 'starts_at', name=op.f('pk_reservations'))
    )
    op.create_index('ix_reservations_kiosk_hour', 'reservations', ['kiosk_id', 'starts_at'], unique=False)
    op.create_table('user_sessions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('created_at', server.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', server.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_user_sessions_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_user_sessions')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_user_sessions_token_hash'))
    )
    op.create_index(op.f('ix_user_sessions_user_id'), 'user_sessions', ['user_id'], unique=False)
    op.create_table('ad_credits',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('advertiser_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('booking_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('kiosk_id', sa.String(length=32), nullable=False),
    sa.Column('local_date', sa.Date(), nullable=False),
    sa.Column('spots', sa.Integer(), nullable=False),
    sa.Column('amount_fen', sa.BigInteger(), nullable=False),
    sa.Column('created_at', server.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('invoice_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.CheckConstraint('amount_fen >= 0', name=op.f('ck_ad_credits_amount_not_negative')),
    sa.CheckConstraint('spots > 0', name=op.f('ck_ad_credits_spots_positive')),
    sa.ForeignKeyConstraint(['advertiser_id'], ['advertisers.id'], name=op.f('fk_ad_credits_advertiser_id_advertisers')),
    sa.ForeignKeyConstraint(['booking_id'], ['bookings.id'], name=op.f('fk_ad_credits_booking_id_bookings')),
    sa.ForeignKeyConstraint(['invoice_id'], ['invoices.id'], name=op.f('fk_ad_credits_invoice_id_invoices')),
    sa.ForeignKeyConstraint(['kiosk_id'], ['kiosks.id'], name=op.f('fk_ad_credits_kiosk_id_kiosks')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ad_credits')),
    sa.UniqueConstraint('booking_id', 'kiosk_id', 'local_date', name='uq_ad_credits_day')
    )
    op.create_index(op.f('ix_ad_credits_advertiser_id'), 'ad_credits', ['advertiser_id'], unique=False)
    op.create_index(op.f('ix_ad_credits_invoice_id'), 'ad_credits', ['invoice_id'], unique=False)
    op.create_table('invoice_lines',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('invoice_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('booking_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('kiosk_id', sa.String(length=32), nullable=True),
    sa.Column('description', sa.String(length=300), nullable=False),
    sa.Column('spots_per_loop', sa.Integer(), nullable=False),
    sa.Column('first_day', sa.Date(), nullable=False),
    sa.Column('last_day', sa.Date(), nullable=False),
    sa.Column('days', sa.Integer(), nullable=False),
    sa.Column('amount_fen', sa.BigInteger(), nullable=False),
    sa.CheckConstraint('amount_fen >= 0', name=op.f('ck_invoice_lines_amount_not_negative')),
    sa.CheckConstraint('days > 0', name=op.f('ck_invoice_lines_days_positive')),
    sa.CheckConstraint('first_day <= last_day', name=op.f('ck_invoice_lines_days_ordered')),
    sa.ForeignKeyConstraint(['booking_id'], ['bookings.id'], name=op.f('fk_invoice_lines_booking_id_bookings')),
    sa.ForeignKeyConstraint(['invoice_id'], ['invoices.id'], name=op.f('fk_invoice_lines_invoice_id_invoices')),
    sa.ForeignKeyConstraint(['kiosk_id'], ['kiosks.id'], name=op.f('fk_invoice_lines_kiosk_id_kiosks')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_invoice_lines'))
    )
    op.create_index(op.f('ix_invoice_lines_booking_id'), 'invoice_lines', ['booking_id'], unique=False)
    op.create_index(op.f('ix_invoice_lines_invoice_id'), 'invoice_lines', ['invoice_id'], unique=False)
    op.create_index(op.f('ix_invoice_lines_kiosk_id'), 'invoice_lines', ['kiosk_id'], unique=False)
    op.add_column('kiosks', sa.Column('loop_seconds', sa.Integer(), nullable=False, server_default='60'))
    op.add_column('kiosks', sa.Column('spot_seconds', sa.Integer(), nullable=False, server_default='10'))
    op.add_column('kiosks', sa.Column('open_hour', sa.Integer(), nullable=False, server_default='0'))
    op.add_column('kiosks', sa.Column('close_hour', sa.Integer(), nullable=False, server_default='24'))
    with op.batch_alter_table('ledger_entries', schema=None) as batch_op:
        batch_op.alter_column('rider_id', existing_type=sa.VARCHAR(length=64), nullable=True)
    op.add_column('ledger_postings', sa.Column('kiosk_id', sa.String(length=32), nullable=True))
    op.create_index(op.f('ix_ledger_postings_kiosk_id'), 'ledger_postings', ['kiosk_id'], unique=False)
    op.add_column('partners', sa.Column('revenue_share_bp', sa.Integer(), server_default='0', nullable=False))
    op.add_column('partners', sa.Column('settlement_cycle', sa.Enum('weekly', 'monthly', name='settlementcycle', native_enum=False, length=16), server_default='monthly', nullable=False))
    op.add_column('partners', sa.Column('payout_mchid', sa.String(length=32), nullable=True))
    with op.batch_alter_table('partners', schema=None) as batch_op:
        batch_op.create_check_constraint(
            op.f('ck_partners_revenue_share_in_range'),
            'revenue_share_bp >= 0 AND revenue_share_bp <= 10000',
        )


def downgrade() -> None:
    with op.batch_alter_table('partners', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_partners_revenue_share_in_range'), type_='check')
    op.drop_column('partners', 'payout_mchid')
    op.drop_column('partners', 'settlement_cycle')
    op.drop_column('partners', 'revenue_share_bp')
    op.drop_index(op.f('ix_ledger_postings_kiosk_id'), table_name='ledger_postings')
    op.drop_column('ledger_postings', 'kiosk_id')
    with op.batch_alter_table('ledger_entries', schema=None) as batch_op:
        batch_op.alter_column('rider_id', existing_type=sa.VARCHAR(length=64), nullable=False)
    op.drop_column('kiosks', 'close_hour')
    op.drop_column('kiosks', 'open_hour')
    op.drop_column('kiosks', 'spot_seconds')
    op.drop_column('kiosks', 'loop_seconds')
    op.drop_index(op.f('ix_invoice_lines_kiosk_id'), table_name='invoice_lines')
    op.drop_index(op.f('ix_invoice_lines_invoice_id'), table_name='invoice_lines')
    op.drop_index(op.f('ix_invoice_lines_booking_id'), table_name='invoice_lines')
    op.drop_table('invoice_lines')
    op.drop_index(op.f('ix_ad_credits_invoice_id'), table_name='ad_credits')
    op.drop_index(op.f('ix_ad_credits_advertiser_id'), table_name='ad_credits')
    op.drop_table('ad_credits')
    op.drop_index(op.f('ix_user_sessions_user_id'), table_name='user_sessions')
    op.drop_table('user_sessions')
    op.drop_index('ix_reservations_kiosk_hour', table_name='reservations')
    op.drop_table('reservations')
    op.drop_index('ix_rebalancing_tasks_partner_status', table_name='rebalancing_tasks')
    op.drop_table('rebalancing_tasks')
    op.drop_index('ix_plays_kiosk_started', table_name='plays')
    op.drop_index('ix_plays_booking_kiosk_date', table_name='plays')
    op.drop_table('plays')
    op.drop_table('playlist_versions')
    op.drop_index(op.f('ix_partner_statement_lines_statement_id'), table_name='partner_statement_lines')
    op.drop_table('partner_statement_lines')
    op.drop_index(op.f('ix_make_goods_kiosk_id'), table_name='make_goods')
    op.drop_table('make_goods')
    op.drop_table('loop_hours')
    op.drop_index('uq_invoices_statement_period', table_name='invoices', postgresql_where=sa.text("kind = 'monthly_statement'"), sqlite_where=sa.text("kind = 'monthly_statement'"))
    op.drop_index(op.f('ix_invoices_status'), table_name='invoices')
    op.drop_index(op.f('ix_invoices_advertiser_id'), table_name='invoices')
    op.drop_table('invoices')
    op.drop_index('ix_delivery_days_kiosk_date', table_name='delivery_days')
    op.drop_table('delivery_days')
    op.drop_index(op.f('ix_booking_kiosks_kiosk_id'), table_name='booking_kiosks')
    op.drop_table('booking_kiosks')
    op.drop_index(op.f('ix_booking_creatives_creative_id'), table_name='booking_creatives')
    op.drop_table('booking_creatives')
    op.drop_index('uq_alerts_one_open', table_name='alerts', sqlite_where=sa.text('closed_at IS NULL'), postgresql_where=sa.text('closed_at IS NULL'))
    op.drop_index('ix_alerts_partner_closed', table_name='alerts')
    op.drop_table('alerts')
    op.drop_index(op.f('ix_users_partner_id'), table_name='users')
    op.drop_index(op.f('ix_users_advertiser_id'), table_name='users')
    op.drop_table('users')
    op.drop_index(op.f('ix_partner_statements_status'), table_name='partner_statements')
    op.drop_index(op.f('ix_partner_statements_partner_id'), table_name='partner_statements')
    op.drop_table('partner_statements')
    op.drop_index(op.f('ix_creatives_status'), table_name='creatives')
    op.drop_index(op.f('ix_creatives_advertiser_id'), table_name='creatives')
    op.drop_table('creatives')
    op.drop_index(op.f('ix_bookings_status'), table_name='bookings')
    op.drop_index(op.f('ix_bookings_advertiser_id'), table_name='bookings')
    op.drop_table('bookings')
    op.drop_table('venue_prices')
    op.drop_table('advertisers')
