const express = require('express');
const crypto = require('crypto');

const app = express();
app.use(express.json());

const WEBHOOK_SECRET = process.env.NOUVEL_WEBHOOK_SECRET;

app.post('/webhooks/nouvel', (req, res) => {
  const signature = req.headers['x-nouvel-signature'];
  const expected = crypto
    .createHmac('sha256', WEBHOOK_SECRET)
    .update(JSON.stringify(req.body))
    .digest('hex');

  if (!crypto.timingSafeEqual(Buffer.from(signature), Buffer.from(expected))) {
    return res.status(401).json({ error: 'Invalid signature' });
  }

  const { event, jobId, status, projects } = req.body;
  if (event === 'job.completed') {
    console.log(`Job ${jobId} ${status}: ${projects.length} video(s)`);
    for (const project of projects) {
      console.log(`  ${project.title}: ${project.videoUrl}`);
    }
  }

  res.status(200).json({ received: true });
});

const PORT = process.env.PORT || 3000;
const server = app.listen(PORT, () => {
  console.log(`Webhook receiver listening on port ${server.address().port}`);
});
